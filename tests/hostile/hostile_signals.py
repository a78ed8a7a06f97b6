"""Real SIGINT / SIGTERM sent to a real ``matedge`` process, per command family.

Shared by tests/hostile/hostile_inputs.py (counts) and tests/edge/test_interrupt.py. Each case starts
``python -m edge ...`` with TMPDIR inside its folder, waits until the command holds a temporary
(or trains), sends the signal and checks: exit 128 + signal, one ``matedge`` line, no traceback,
stopped within 30 s, no temporaries (``.tmp-``, ``.old-``, ``matedge-*``) left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]

PROFILE = """\
name = "board"
description = "a test board"
backend = "executorch"
precision = "fp32"
threads = 1
context = 32
transport = "{transport}"
[limits]
memory_mb = 100
decode_ms_per_token = 5
first_token_ms = 50
prompt_tokens = 8
[hardware]
gemm_gflops = 10
memory_bandwidth_gbs = 4
"""


def temporaries(*folders: Path) -> list[Path]:
    found = []
    for folder in folders:
        if folder.exists():
            found += [p for p in folder.rglob("*") if ".tmp-" in p.name or ".old-" in p.name
                      or p.name.startswith("matedge-")]
    return found


@dataclass
class Stopped:
    code: int | None
    stderr: str
    took_s: float
    saw_temporary: bool  # the signal arrived while the command held a temporary
    finished_first: bool = False

    def problems(self, sig: int, *folders: Path) -> list[str]:
        """What is wrong with how the command stopped ([] when it stopped cleanly)."""
        p = []
        if self.finished_first:
            return ["finished before the signal"]
        if self.code != 128 + sig:
            p.append(f"exit {self.code}, expected {128 + sig}")
        lines = [ln for ln in self.stderr.splitlines() if ln.startswith("matedge")]
        if len(lines) != 1 or f"interrupted by {signal.Signals(sig).name}" not in lines[0]:
            p.append(f"{len(lines)} matedge lines")
        if "Traceback" in self.stderr:
            p.append("traceback")
        if self.took_s >= 30:
            p.append(f"took {self.took_s:.0f} s")
        left = temporaries(*folders)
        if left:
            p.append(f"left {[str(x) for x in left]}")
        return p


def interrupt(argv: list[str], work: Path, sig: int, ready: Callable[[], bool], timeout: float = 300.0) -> Stopped:
    """Start ``python -m edge argv`` in ``work``; send ``sig`` once ``ready()`` (or at ``timeout``)."""
    tmp = work / "systmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "edge", *argv], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline, saw = time.monotonic() + timeout, False
    while time.monotonic() < deadline and proc.poll() is None:
        if ready():
            saw = True
            break
        time.sleep(0.005)
    if proc.poll() is not None:
        _, err = proc.communicate()
        return Stopped(proc.returncode, err, 0.0, False, finished_first=True)
    sent = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return Stopped(proc.returncode, err, time.monotonic() - sent, saw)


def make_checkpoints(root: Path) -> tuple[Path, Path]:
    """A tiny checkpoint (max_context 32) and a big one (slow to write: the signal lands mid-write)."""
    import torch

    from edge.checkpoint import save_model
    from edge.config import MatFormerConfig
    from edge.model import MatFormerLM

    torch.manual_seed(0)
    tiny = save_model(MatFormerLM(MatFormerConfig.from_preset("tiny", max_context=32)), root / "tiny")
    big = save_model(MatFormerLM(MatFormerConfig(d_model=256, n_layers=8, n_heads=4, n_kv_heads=2, d_ff=8192)),
                     root / "big")
    return tiny, big


def cases(tiny: Path, big: Path) -> dict[str, tuple[int, Callable[[Path], tuple[list[str], Callable[[], bool]]]]]:
    """family-signal -> (signal, work folder -> (argv, ready predicate))."""

    def train(w):
        start = time.monotonic()
        return (["train", "--preset", "tiny", "--steps", "100000", "--threads", "1", "--out", "run", "--quiet"],
                lambda: time.monotonic() - start > 25)

    def slice_(w):
        return (["slice", str(big), "--spec", "XL", "--out", "sliced"], lambda: bool(list(w.glob(".sliced.tmp-*"))))

    def export(w):
        return (["export", str(tiny), "--spec", "S", "--backend", "executorch", "--out", "out", "--context", "32",
                 "--prefill-len", "4", "--no-parity"], lambda: (w / "out").exists())

    def profile(w):
        (w / "board.toml").write_text(PROFILE.format(transport="local"))
        return (["profile", "--device", "board.toml", "--checkpoint", str(tiny), "--runs", "2", "--warmup", "0",
                 "--rounds", "1", "--out", "t.json"], lambda: bool(list((w / "systmp").glob("matedge-profile-*"))))

    def build(w):
        (w / "board.toml").write_text(PROFILE.format(transport="none"))
        return (["build", "--device", "board.toml", "--checkpoint", str(tiny), "--out", "b", "--no-measure", "--quiet",
                 "--eval-tokens", "128", "--generations", "0"], lambda: bool(list((w / "b").glob(".board.tmp-*"))))

    return {"train-SIGTERM": (signal.SIGTERM, train), "slice-SIGINT": (signal.SIGINT, slice_),
            "slice-SIGTERM": (signal.SIGTERM, slice_), "export-SIGTERM": (signal.SIGTERM, export),
            "profile-SIGINT": (signal.SIGINT, profile), "build-SIGTERM": (signal.SIGTERM, build)}


def run_case(name: str, table: dict, work: Path) -> tuple[Stopped, list[str]]:
    sig, make = table[name]
    work.mkdir(parents=True, exist_ok=True)
    argv, ready = make(work)
    stopped = interrupt(argv, work, sig, ready)
    return stopped, stopped.problems(sig, work)
