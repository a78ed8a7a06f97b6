"""The command line: ``edge.cli.main`` dispatches ``matedge COMMAND`` to one module per command.

Each command module has HELP, configure(parser) and run(args) -> int. Keep heavy imports
(torch, backends) inside ``run`` so ``matedge --help`` stays fast."""

from edge.cli.main import main

__all__ = ["main"]
