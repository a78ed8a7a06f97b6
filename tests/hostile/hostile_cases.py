"""Hostile but fair inputs for ``matedge``: how a case is built and run. The catalogue itself is
hostile_families.py; tests/hostile/hostile_inputs.py counts it and tests/edge/test_hardening.py
parametrises over it.

Each case builds its inputs in a fresh folder and returns a ``matedge`` argument list. It is run
in-process through ``edge.cli.main`` and classified:

    clean      exit code as expected (2 for bad input: exactly one ``matedge ...: error:`` line,
               no traceback) and the aftermath check passes (user data intact, nothing written
               where it must not be)
    traceback  an exception escaped the CLI
    wrong      another exit code, several lines, or a failed aftermath check
    leftovers  temporaries (``.tmp-``, ``.old-``, ``matedge-profile-``) left in the folder or the
               system temp folder

Families follow the classes of the hardening issue: destinations, transports, import, loaders,
ranges. Interruption and the runners' fuzzing need real processes: see hostile_inputs.py and
the tests.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

GOOD_PROFILE = """\
name = "{name}"
description = "a test board"
backend = "executorch"
precision = "fp32"
threads = 2
context = 48
transport = "{transport}"
[limits]
memory_mb = {memory_mb}
decode_ms_per_token = 5
first_token_ms = 50
prompt_tokens = 16
[hardware]
gemm_gflops = 10
memory_bandwidth_gbs = 4
"""


class Fixtures:
    """Shared inputs, made once per run: a tiny universal checkpoint and a valid cost table."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._ckpt: Path | None = None
        self._table: dict | None = None

    @property
    def ckpt(self) -> Path:
        if self._ckpt is None:
            import torch

            from edge.checkpoint import save_model
            from edge.config import MatFormerConfig
            from edge.model import MatFormerLM

            torch.manual_seed(0)
            self._ckpt = save_model(MatFormerLM(MatFormerConfig.from_preset("tiny")), self.root / "ckpt", {"step": 1})
        return self._ckpt

    @property
    def table(self) -> dict:
        if self._table is None:
            from edge.checkpoint import load_config
            from edge.device.estimate import estimate_table
            from edge.device.profiles import load_profile

            path = self.root / "board.toml"
            path.write_text(GOOD_PROFILE.format(name="board", transport="none", memory_mb=100))
            self._table = estimate_table(load_profile(path), load_config(self.ckpt))
        return json.loads(json.dumps(self._table))  # a fresh copy to mutate


@dataclass
class Case:
    family: str
    name: str
    make: Callable[[Path, Fixtures], list[str]]  # (work folder, fixtures) -> matedge argv
    expect: int = 2
    after: Callable[[Path], str] | None = None  # '' when the aftermath is right, else what is wrong
    cleanup: Callable[[Path], None] | None = None  # undo what make() did outside the folder (a mount)
    slow: bool = False  # runs an export (minutes on a busy machine)

    @property
    def id(self) -> str:
        return f"{self.family}:{self.name}"


# -- helpers that build inputs -------------------------------------------------------------------------
def profile_file(work: Path, name: str = "board", transport: str = "none", memory_mb="100", edit=None) -> Path:
    text = GOOD_PROFILE.format(name=name, transport=transport, memory_mb=memory_mb)
    text = edit(text) if edit else text
    path = work / f"{name if '/' not in name and name not in ('.', '..') else 'weird'}.toml"
    path.write_text(text)
    return path


USER_FILES = {"my_folder/thesis.txt": "years of work", "notes.txt": "precious"}
MADE = ".user-files"  # which of USER_FILES this case made (intact() checks those)


def _made(work: Path, rel: str) -> None:
    with open(work / MADE, "a") as f:
        f.write(rel + "\n")


def user_folder(work: Path) -> Path:
    """A folder of the user's, with a file in it (intact() checks it afterwards)."""
    d = work / "my_folder"
    d.mkdir()
    (d / "thesis.txt").write_text(USER_FILES["my_folder/thesis.txt"])
    _made(work, "my_folder/thesis.txt")
    return d


def user_file(work: Path) -> Path:
    f = work / "notes.txt"
    f.write_text(USER_FILES["notes.txt"])
    _made(work, "notes.txt")
    return f


def intact(work: Path) -> str:
    """'' when every user file that user_folder/user_file made is still there, unchanged."""
    made = (work / MADE).read_text().split() if (work / MADE).exists() else []
    for rel in made:
        p = work / rel
        if not p.is_file():
            return f"{rel} was deleted or replaced by a folder"
        if p.read_text() != USER_FILES[rel]:
            return f"{rel} was changed"
    return ""


def table_file(work: Path, fx: Fixtures, edit) -> Path:
    t = fx.table
    edit(t)
    path = work / "table.json"
    path.write_text(json.dumps(t, allow_nan=True))
    return path


def nothing_outside(work: Path) -> str:
    stray = [p for p in work.parent.rglob("*.json") if "cost_tables" not in p.parts and not p.is_relative_to(work)
             and p.name.startswith(("x-", "p-", "evil"))]
    return f"wrote outside: {stray}" if stray else ""


def ckpt_copy(work: Path, fx: Fixtures, edit: Callable[[Path], None]) -> Path:
    import shutil

    dst = work / "ck"
    shutil.copytree(fx.ckpt, dst)
    edit(dst)
    return dst


def replace_with(path: Path, kind: str, text: str = "") -> None:
    """Put a folder, a FIFO or ``text`` where a file belongs."""
    if path.exists():
        path.unlink()
    if kind == "dir":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_text(text)


DEEP_JSON = "[" * 100_000 + "]" * 100_000
HUGE_INT = "9" * 5000


# -- running one case --------------------------------------------------------------------------------
@dataclass
class Outcome:
    case: Case
    code: int | None
    stderr: str
    verdict: str  # clean | traceback | wrong
    leftovers: list[str]
    detail: str = ""


def _temps() -> set[str]:
    root = Path(tempfile.gettempdir())
    return {p.name for p in root.glob("matedge-*")}


def run_case(case: Case, work: Path, fx: Fixtures) -> Outcome:
    """Build the case in ``work`` and run it through the CLI in-process; classify the outcome."""
    from edge.cli import main

    work.mkdir(parents=True, exist_ok=True)
    before = _temps()
    err, out = io.StringIO(), io.StringIO()
    code, tb = None, ""
    try:
        argv = case.make(work, fx)
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = main(argv)
            except SystemExit as e:  # argparse
                code = e.code if isinstance(e.code, int) else 2
            except BaseException:  # noqa: BLE001 - that is the finding
                tb = traceback.format_exc()
        try:
            detail_after = case.after(work) if case.after is not None else ""
        except Exception as e:  # noqa: BLE001 - the aftermath itself is broken: that is the finding
            detail_after = f"aftermath: {type(e).__name__}: {e}"
    finally:
        if case.cleanup is not None:
            case.cleanup(work)
    text = err.getvalue()
    leftovers = [str(p) for p in work.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]
    leftovers += sorted(_temps() - before)
    if tb or "Traceback" in text:
        return Outcome(case, code, text + tb, "traceback", leftovers, tb.strip().splitlines()[-1] if tb else "")
    errors = [ln for ln in text.splitlines() if ln.startswith("matedge") and "error:" in ln]
    detail = ""
    if code != case.expect:
        detail = f"exit {code}, expected {case.expect}"
    elif code == 2 and len(errors) != 1:
        detail = f"{len(errors)} error lines"
    else:
        detail = detail_after
    return Outcome(case, code, text, "wrong" if detail else "clean", leftovers, detail)
