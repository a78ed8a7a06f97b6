"""``matedge``: one console script, one dict of commands.

Each command lives in a module that defines ``HELP`` (one line), ``configure(parser)`` and
``run(args) -> int``; modules are imported only when their command runs, so ``--help`` is fast
and a missing backend library only affects the commands that need it. A ``MatEdgeError`` (bad
input) prints one line and exits with code 2; so do a bad option and an operating-system error
(disk full, read-only file system, permission denied): ``edge.guard`` maps them. SIGINT and
SIGTERM stop the command, remove its temporaries and exit with 130 / 143 (``edge.interrupt``).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from edge import guard

# command -> module implementing it. Keep sorted by the order a user meets them.
COMMANDS: dict[str, str] = {
    "train": "edge.cli.train",
    "import": "edge.cli.importing",
    "convert": "edge.cli.convert",
    "generate": "edge.cli.generate",
    "info": "edge.cli.info",
    "eval": "edge.cli.evaluate",
    "slice": "edge.cli.slice",
    "export": "edge.cli.export",
    "profiles": "edge.cli.device_profiles",
    "profile": "edge.cli.cost_tables",
    "predict": "edge.cli.predict",
    "build": "edge.cli.build",
    "run": "edge.cli.run",
    "bundle": "edge.cli.bundle",
}

DESCRIPTION = """\
matformer-edge: train one universal MatFormer model, then ship the best-fitting Mix'n'Match
submodel to every device.

Specs name one FFN granularity per layer: "XL" (all layers), "S,S,M,M,L,XL" (per layer) or
"S*2,M*2,L*2" (repeats). Commands that take an optional CHECKPOINT use the default model
(runs/default, the small byte-level model `matedge train` trains) when it is left out; `make demo`
deploys a real one, runs/smollm2-mat: pass it as CHECKPOINT."""


def _modules() -> dict[str, object]:
    """The command modules (light: their heavy imports happen inside ``run``)."""
    return {name: importlib.import_module(module) for name, module in COMMANDS.items()}


def build_parser(modules: dict[str, object]) -> argparse.ArgumentParser:
    parser = guard.OneLineParser(prog="matedge", description=DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=guard.OneLineParser)
    for name, mod in modules.items():
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.configure(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(_modules())
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    return guard.run_command(f"matedge {args.command}", lambda: args._run(args))


if __name__ == "__main__":
    sys.exit(main())
