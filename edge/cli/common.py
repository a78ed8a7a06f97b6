"""Argument helpers shared by commands that take a checkpoint and a spec."""

from __future__ import annotations

from edge.config import default_checkpoint
from edge.inputs import int_arg


def add_checkpoint(p, required: bool = False) -> None:
    if required:
        p.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint folder")
    else:
        p.add_argument("checkpoint", metavar="CHECKPOINT", nargs="?",
                       help=f"a checkpoint folder (default: {default_checkpoint()}, the model `matedge train` trains)")


def add_eval_tokens(p) -> None:
    p.add_argument("--eval-tokens", type=int_arg(1, 1 << 24), default=32_768,
                   help="validation tokens to score (default: 32768)")


def check_output_folder(out: str) -> None:
    """Refuse to replace a folder this tool did not write (anything but a checkpoint), or an
    unwritable place; a checkpoint folder is replaced atomically."""
    from pathlib import Path

    from edge.errors import MatEdgeError

    path = Path(out)
    if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not (path / "config.json").is_file())):
        raise MatEdgeError(f"--out {out!r} exists and is not a checkpoint folder (choose a new folder)")
    check_writable(out)


def check_writable(out: str) -> None:
    """Refuse an --out whose nearest existing parent folder this process cannot write."""
    import os
    from pathlib import Path

    from edge.errors import MatEdgeError

    parent = Path(out).resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise MatEdgeError(f"--out {out!r}: {parent} is not writable (choose a folder you can write)")
