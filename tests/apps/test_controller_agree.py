"""The latency controller: Python (reference), JavaScript (web app) and C++ (native app) choose
the same member at every step of the same decode-time series."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from edge.device.controller import LatencyController

ROOT = Path(__file__).resolve().parents[2]
COST = {"S": 1.0, "M": 1.6, "L": 2.6, "XL": 4.0}  # idle ms/token


def case(target: float, load: list[float], extra: list[float] | None = None) -> dict:
    return {"members": list(COST), "target": target, "cost": COST, "load": load, "extra": extra or [0.0] * len(load)}


def cases() -> list[dict]:
    rng = random.Random(0)
    n = 300
    return [
        case(3.2, [1.0] * 60),  # XL over the target when idle: down to L, stays
        case(3.2, [1.0] * 40 + [2.5] * 80 + [1.0] * 180),  # load comes and goes: down to S, back up
        case(3.2, [1.0] * 200, [6.0 if i % 3 == 2 else 0.0 for i in range(200)]),  # recurring preemption
        case(3.2, [1.0] * 100, [40.0 if i == 50 else 0.0 for i in range(100)]),  # one stall
        case(2.0, [rng.uniform(0.6, 2.0) for _ in range(n)],
             [rng.choice([0.0, 0.0, 0.0, 5.0]) for _ in range(n)]),  # noise and preemption
        # quiet stretches too short for L: step-ups that fail, and the wait doubling after each
        case(3.2, [1.0 if i % 40 < 10 else 1.6 for i in range(600)]),
    ]


def reference(c: dict) -> list[str]:
    ctl = LatencyController(c["members"], c["target"])
    used = []
    for load, extra in zip(c["load"], c["extra"]):
        used.append(ctl.member)
        ctl.observe(c["cost"][ctl.member] * load + extra)
    return used


def test_reference_controller_reacts_to_every_series():
    got = [reference(c) for c in cases()]
    assert got[0][-1] == "L" and "S" in got[1] and got[1][-1] == "L"
    assert got[2][-1] in ("S", "M") and got[3][-1] == "L"  # preemption steps down, one stall does not


@pytest.mark.integration
@pytest.mark.skipif(not shutil.which("node") or not shutil.which("g++"), reason="needs node and g++")
def test_three_implementations_agree(tmp_path):
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases()))
    want = [reference(c) for c in cases()]
    js = subprocess.run(["node", str(ROOT / "apps/web/control_cli.mjs"), str(path)], capture_output=True, text=True,
                        timeout=60, check=True)
    exe = tmp_path / "matedge_control"
    subprocess.run(["g++", "-std=c++17", "-O1", "-o", str(exe), str(ROOT / "apps/native/control_cli.cpp")],
                   check=True, timeout=300)
    cpp = subprocess.run([str(exe), str(path)], capture_output=True, text=True, timeout=60, check=True)
    for lang, out in (("javascript", js.stdout), ("c++", cpp.stdout)):
        assert json.loads(out) == want, lang
