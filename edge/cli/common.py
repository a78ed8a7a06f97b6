"""Argument helpers shared by commands that take a checkpoint and a spec."""

from __future__ import annotations

from edge.config import default_checkpoint


def add_checkpoint(p, required: bool = False) -> None:
    if required:
        p.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint folder")
    else:
        p.add_argument("checkpoint", metavar="CHECKPOINT", nargs="?",
                       help=f"a checkpoint folder (default: {default_checkpoint()}, the model `make demo` trains)")


def add_eval_tokens(p) -> None:
    p.add_argument("--eval-tokens", type=int, default=32_768,
                   help="validation tokens to score (default: 32768)")
