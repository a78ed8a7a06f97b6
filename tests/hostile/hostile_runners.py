"""Hostile inputs for the runners (apps/cpp matedge_runner, edge/device/runner_litert.py): bad numbers,
missing or wrong metadata, files that are not files, and mutated artifacts.

Shared by tests/hostile/hostile_inputs.py (counts) and tests/edge/device/test_runner_hardening.py. A runner's
outcome is ``clean`` (exit 0 with its JSON, or exit 2 with exactly one line of its own on
stderr), ``signal`` (killed by one: the failure this guards against) or ``wrong``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PREFIX = {"executorch": "matedge_runner:", "litert": "runner_litert:"}
SUFFIX = {"executorch": ".pte", "litert": ".tflite"}


def export_artifacts(folder: Path, backends=("executorch", "litert")) -> dict[str, Path]:
    """A tiny model exported to each backend (with its metadata JSON beside it)."""
    import torch

    import exporters
    from edge.config import MatFormerConfig
    from edge.model import MatFormerLM

    torch.manual_seed(0)
    model = MatFormerLM(MatFormerConfig.from_preset("tiny")).eval()
    return {b: exporters.export_model(model, b, "fp32", folder, spec="S", context=16, prefill_len=4, parity=False,
                                      name=b).path for b in backends}


def runner_argv(backend: str) -> list[str]:
    if backend == "executorch":
        from edge.device.cpp_runner import ensure_cpp_runner

        return [str(ensure_cpp_runner())]
    from edge.device.runners import LITERT_RUNNER

    return [sys.executable, str(LITERT_RUNNER)]


@dataclass
class RunnerOutcome:
    code: int
    verdict: str  # clean | signal | wrong
    line: str


def run(backend: str, args: list[str], timeout: float = 120.0) -> RunnerOutcome:
    """Run a runner; classify its exit (see module doc)."""
    r = subprocess.run([*runner_argv(backend), *map(str, args)], capture_output=True, timeout=timeout)
    err = r.stderr.decode(errors="replace")
    ours = [ln for ln in err.splitlines() if ln.startswith(PREFIX[backend])]
    if r.returncode < 0:
        return RunnerOutcome(r.returncode, "signal", f"signal {-r.returncode}")
    if r.returncode == 0:
        try:
            json.loads(r.stdout.decode(errors="replace").strip().splitlines()[-1])
            return RunnerOutcome(0, "clean", "")
        except (ValueError, IndexError):
            return RunnerOutcome(0, "wrong", "exit 0 without JSON")
    if r.returncode == 2 and len(ours) == 1:
        return RunnerOutcome(2, "clean", ours[0])
    return RunnerOutcome(r.returncode, "wrong", (ours or err.splitlines() or ["no output"])[-1][:200])


def bad_argument_cases(backend: str, art: Path, work: Path) -> dict[str, list]:
    """name -> runner arguments that must give a clean error (exit 2, one line)."""
    meta = art.with_suffix(".json")
    good = json.loads(meta.read_text())
    wrong_size = work / "wrong_size.json"
    wrong_size.write_text(json.dumps({**good, "file_size": good["file_size"] + 1}))
    wrong_sha = work / "wrong_sha.json"
    wrong_sha.write_text(json.dumps({**good, "sha256": "0" * 64}))
    no_fields = work / "no_fields.json"
    no_fields.write_text("{}")
    (work / "meta_dir").mkdir(exist_ok=True)
    lone = work / f"lone{SUFFIX[backend]}"
    lone.write_bytes(art.read_bytes())  # no metadata beside it
    (work / f"dir{SUFFIX[backend]}").mkdir(exist_ok=True)
    fifo = work / f"fifo{SUFFIX[backend]}"
    if not fifo.exists():
        os.mkfifo(fifo)
    base = ["--model", art, "--runs", "1", "--warmup", "0"]
    return {
        "threads-overflow": [*base, "--threads", "99999999999"], "threads-negative": [*base, "--threads", "-1"],
        "threads-huge": [*base, "--threads", "100000"], "runs-zero": ["--model", art, "--runs", "0"],
        "runs-text": ["--model", art, "--runs", "x"], "warmup-huge": ["--model", art, "--warmup", "10000000000"],
        "meta-wrong-size": [*base, "--meta", wrong_size], "meta-wrong-sha": [*base, "--meta", wrong_sha],
        "meta-no-fields": [*base, "--meta", no_fields], "meta-is-dir": [*base, "--meta", work / "meta_dir"],
        "meta-missing": ["--model", lone, "--runs", "1"], "model-is-dir": ["--model", work / f"dir{SUFFIX[backend]}"],
        "model-is-fifo": ["--model", fifo, "--no-verify"], "model-missing": ["--model", work / "nope.bin"],
    }


def mutants(art: Path, n: int, seed: int = 0):
    """``n`` mutated copies of ``art``'s bytes (1, 2 or 8 random bytes replaced, or truncated)."""
    data = art.read_bytes()
    rng = random.Random(seed)
    for _ in range(n):
        b = bytearray(data)
        kind = rng.choice(["byte", "byte", "bytes2", "bytes8", "truncate"])
        if kind == "truncate":
            b = b[: rng.randrange(len(b))]
        else:
            for _ in range({"byte": 1, "bytes2": 2, "bytes8": 8}[kind]):
                b[rng.randrange(len(b))] = rng.randrange(256)
        yield bytes(b)


def fuzz(backend: str, art: Path, work: Path, n: int, resign: bool, seed: int = 0) -> dict[str, int]:
    """Run ``n`` mutants of ``art``. Plain: the metadata stays the original's (the runner must
    refuse every mutant). Re-signed: the metadata is rewritten to match the mutant (a hostile
    file with consistent metadata: the runtime itself must then fail cleanly or run).
    Returns counts {clean, signal, wrong, ran, crash_reported}: ``crash_reported`` counts the clean
    exits where the C++ runner's crash handler turned a fault inside the runtime into one line."""
    meta = json.loads(art.with_suffix(".json").read_text())
    counts = {"clean": 0, "signal": 0, "wrong": 0, "ran": 0, "crash_reported": 0}
    path = work / f"mutant{SUFFIX[backend]}"
    for data in mutants(art, n, seed):
        path.write_bytes(data)
        m = dict(meta, file_size=len(data), sha256=hashlib.sha256(data).hexdigest()) if resign else meta
        path.with_suffix(".json").write_text(json.dumps(m))
        out = run(backend, ["--model", path, "--runs", "1", "--warmup", "0", "--threads", "1"])
        counts[out.verdict] += 1
        counts["ran"] += out.code == 0
        counts["crash_reported"] += "runtime crashed" in out.line
    return counts
