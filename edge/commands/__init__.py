"""CLI command modules: each has HELP, configure(parser) and run(args) -> int.

Keep heavy imports (torch, backends) inside ``run`` so ``matedge --help`` stays fast."""
