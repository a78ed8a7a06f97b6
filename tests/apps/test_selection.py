"""The selection rule: Python (reference), JavaScript (web app) and C++ (native app) pick the
same variant for one table of manifests and device facts."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from edge.bundle.selection import DEFAULT_RULE, choose

ROOT = Path(__file__).resolve().parents[2]


def variant(name, loss, nbytes, mem, decode, first=5.0, measured=None, spec="XL"):
    return {"name": name, "spec": spec, "val_loss": loss, "bytes": nbytes,
            "predicted": {"memory_mb": mem, "decode_ms_per_token": decode, "first_token_ms": first},
            "measured": measured}


BIG = variant("big", 1.50, 9_000_000, 40.0, 1.0, 8.0, spec="XL")
MID = variant("mid", 1.60, 5_000_000, 25.0, 0.6, 5.0, spec="L")
SMALL = variant("small", 1.80, 2_000_000, 12.0, 0.3, 2.0, spec="S")
THREE = {"selection": DEFAULT_RULE, "variants": [SMALL, BIG, MID]}  # order in the file is irrelevant

ROOMY = {"available_memory_mb": 1000, "decode_ms_per_token": 2.0, "first_token_ms": 100, "slowdown": 1.0}

CASES = [
    ("everything fits: best loss", THREE, ROOMY, "big", True),
    ("memory rules out the best", THREE, {**ROOMY, "available_memory_mb": 30}, "mid", True),
    ("memory rules out two", THREE, {**ROOMY, "available_memory_mb": 20}, "small", True),
    ("memory exactly at the limit fits", THREE, {**ROOMY, "available_memory_mb": 25}, "mid", True),
    ("a slow device scales predicted latency", THREE, {**ROOMY, "slowdown": 2.5}, "mid", True),
    ("a very slow device", THREE, {**ROOMY, "slowdown": 5.0}, "small", True),
    ("nothing fits: least memory", THREE, {**ROOMY, "available_memory_mb": 5}, "small", False),
    ("unknown memory is skipped", THREE, {**ROOMY, "available_memory_mb": None}, "big", True),
    ("missing facts are skipped", THREE, {"decode_ms_per_token": 0.7}, "mid", True),
    ("no facts at all: best loss", THREE, {}, "big", True),
    ("first-token limit", THREE, {**ROOMY, "first_token_ms": 6.0}, "mid", True),
    ("measured cost overrides the prediction",
     {"selection": DEFAULT_RULE, "variants": [{**BIG, "measured": {"decode_ms_per_token": 3.0}}, MID, SMALL]},
     ROOMY, "mid", True),
    ("a null measurement falls back to the prediction",
     {"selection": DEFAULT_RULE, "variants": [{**BIG, "measured": {"decode_ms_per_token": None}}, MID]},
     ROOMY, "big", True),
    ("equal loss: fewer bytes first",
     {"selection": DEFAULT_RULE, "variants": [{**BIG, "val_loss": 1.6}, MID]}, ROOMY, "mid", True),
    ("a variant without that cost is not ruled out by it",
     {"selection": DEFAULT_RULE, "variants": [{**BIG, "predicted": {"memory_mb": 40.0}}, MID]},
     {**ROOMY, "decode_ms_per_token": 0.1}, "big", True),
    ("a rule with one constraint",
     {"selection": {"order": ["val_loss"], "constraints": [{"cost": "memory_mb", "limit": "available_memory_mb"}],
                    "otherwise": "memory_mb"}, "variants": [BIG, MID, SMALL]},
     {"available_memory_mb": 26, "decode_ms_per_token": 0.01}, "mid", True),
    ("nothing fits, ordered by another cost",
     {"selection": {**DEFAULT_RULE, "otherwise": "decode_ms_per_token"}, "variants": [BIG, MID]},
     {"available_memory_mb": 1}, "mid", False),
    ("one variant that does not fit", {"selection": DEFAULT_RULE, "variants": [BIG]},
     {"available_memory_mb": 1}, "big", False),
]


@pytest.mark.parametrize("name,manifest,facts,want,fits", CASES, ids=[c[0] for c in CASES])
def test_reference_rule(name, manifest, facts, want, fits):
    got = choose(manifest, facts)
    assert (got["variant"], got["fits"]) == (want, fits), got["reason"]
    assert got["reason"].startswith(want)


def run_js(cases_file: Path) -> list[dict]:
    out = subprocess.run(["node", str(ROOT / "apps/web/select_cli.mjs"), str(cases_file)], capture_output=True,
                         text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def run_cpp(cases_file: Path, tmp: Path) -> list[dict]:
    exe = tmp / "matedge_select"
    subprocess.run(["g++", "-std=c++17", "-O1", "-o", str(exe), str(ROOT / "apps/native/select_cli.cpp")],
                   check=True, timeout=300)
    out = subprocess.run([str(exe), str(cases_file)], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


@pytest.mark.integration
@pytest.mark.skipif(not shutil.which("node") or not shutil.which("g++"), reason="needs node and g++")
def test_three_implementations_agree(tmp_path):
    cases = [{"manifest": m, "facts": f} for _, m, f, _, _ in CASES]  # written to JSON: no copy needed
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases))
    want = [(r["variant"], r["fits"]) for r in (choose(c["manifest"], c["facts"]) for c in cases)]
    for lang, got in (("javascript", run_js(path)), ("c++", run_cpp(path, tmp_path))):
        assert [(g["variant"], g["fits"]) for g in got] == want, lang
        assert all(g["reason"].startswith(g["variant"]) for g in got), lang
