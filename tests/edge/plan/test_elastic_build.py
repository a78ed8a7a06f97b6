"""Elastic builds: member choice under the memory limit, profile validation, and a real build."""

from __future__ import annotations

import json

import pytest

from edge.config import MatFormerConfig
from edge.plan.elastic import choose_members, frontier_levels
from edge.plan.planner import Candidate
from edge.spec import param_count, parse_spec

CFG = MatFormerConfig.from_preset("tiny")
RANK = {"S": 1, "M": 2, "L": 4, "XL": 8}


def cost_fn(spec):
    """Synthetic costs: decode and memory grow with the FFN widths."""
    units = sum(RANK[g] for g in spec)
    return {"decode_ms_per_token": 0.1 * units, "first_token_ms": 1.0, "memory_mb": 1.0 * units}


def cand(text, loss):
    spec = parse_spec(text, CFG)
    return Candidate(spec, loss, cost_fn(spec), param_count(spec, CFG), "evolution")


CANDS = [cand("S", 3.0), cand("S,S,S,M", 2.9), cand("S,M,M,L", 2.6), cand("M,L,L,XL", 2.3),
         cand("L,L,XL,XL", 2.15), cand("XL", 2.1), cand("M,M,M,M", 2.95)]


def test_members_uniform_frontier_and_default_in_latency_order():
    chosen = parse_spec("S,M,M,L", CFG)
    members, default = choose_members(CFG, cost_fn, CANDS, chosen, memory_mb=100)
    assert list(members)[:1] == ["S"] and list(members)[-1] == "XL"
    assert {"S", "M", "L", "XL"} <= set(members)
    assert members[default] == chosen and default.startswith("P")
    ms = [cost_fn(s)["decode_ms_per_token"] for s in members.values()]
    assert ms == sorted(ms)
    assert parse_spec("M,M,M,M", CFG) == members["M"]  # uniform M is kept though off the frontier


def test_uniform_members_can_be_chosen():
    """--members S,XL: only those uniform specs, plus the frontier and the chosen spec."""
    chosen = parse_spec("S,M,M,L", CFG)
    members, default = choose_members(CFG, cost_fn, CANDS, chosen, memory_mb=100, levels=0, uniform=("S", "XL"))
    assert list(members) == ["S", default, "XL"] and members[default] == chosen
    members, default = choose_members(CFG, cost_fn, CANDS, parse_spec("L,L,L,L", CFG), memory_mb=100, levels=0,
                                      uniform=("S",))
    assert list(members) == ["S", "L"] and default == "L"  # the chosen spec keeps its uniform name


def test_memory_limit_drops_the_largest_members_never_the_default():
    chosen = parse_spec("S,M,M,L", CFG)
    members, default = choose_members(CFG, cost_fn, CANDS, chosen, memory_mb=16)  # XL envelope is 32
    assert "XL" not in members and members[default] == chosen
    env = [max(RANK[s[l]] for s in members.values()) for l in range(CFG.n_layers)]
    assert sum(env) <= 16


def test_frontier_levels_spread():
    assert frontier_levels([1, 2, 3, 4, 5, 6, 7], 3) == [1, 4, 7]
    assert frontier_levels([1, 2], 3) == [1, 2]
    assert frontier_levels([1, 2, 3], 0) == []  # --frontier-members 0: S/M/L/XL and the default only


def test_profile_elastic_field_is_validated(monkeypatch):
    import dataclasses

    from edge.device.profiles import validate_data
    from exporters.backends import BACKENDS

    base = {"name": "x", "description": "d", "precision": "fp32", "threads": 1, "context": 64, "transport": "none",
            "limits": {"memory_mb": 10, "decode_ms_per_token": 1, "first_token_ms": 10, "prompt_tokens": 8},
            "hardware": {"gemm_gflops": 1, "memory_bandwidth_gbs": 1}}
    assert validate_data({**base, "backend": "executorch", "elastic": True}) == []
    assert validate_data({**base, "backend": "litert", "elastic": True}) == []
    assert validate_data({**base, "backend": "coreml", "precision": "fp16", "elastic": True}) == []
    # a backend whose record names no elastic writer is refused, naming those that have one
    monkeypatch.setitem(BACKENDS, "coreml", dataclasses.replace(BACKENDS["coreml"], elastic=None))
    [p] = validate_data({**base, "backend": "coreml", "precision": "fp16", "elastic": True})
    assert "elastic = true" in p and "executorch, litert;" in p
    [p] = validate_data({**base, "backend": "executorch", "elastic": "yes"})
    assert "elastic" in p and "boolean" in p


@pytest.mark.slow
@pytest.mark.integration
def test_elastic_build_writes_one_artifact_with_every_member(ckpt, tmp_path, write_profile):
    pytest.importorskip("executorch.runtime")
    from edge.device.profiles import load_profile
    from edge.plan.build import BuildSettings, build_all
    from edge.plan.planner import SearchSettings
    from exporters.elastic_runner import ElasticRunner

    path = write_profile(tmp_path, "board", elastic=True)
    settings = BuildSettings(checkpoint=ckpt, out_root=tmp_path / "build", eval_tokens=1024, seq_len=32, runs=5,
                             warmup=1, search=SearchSettings(generations=1, population=4), progress=False,
                             frontier_members=0, elastic_members=("S", "XL"))  # each member is one more method
    [res] = build_all([load_profile(path)], settings, log=lambda *_: None)
    assert res.ok, res.error
    folder = tmp_path / "build" / "board"
    m = json.loads((folder / "manifest.json").read_text())
    el = m["artifacts"]["elastic"]
    assert set(el["members"]) == {"S", "XL", el["default"]} and all(el["parity"].values())
    assert el["members"][el["default"]] == m["spec"]
    runner = ElasticRunner(folder / el["file"])
    assert set(runner.members) == set(el["members"])
    meta = json.loads((folder / el["metadata"]).read_text())
    assert meta["methods"]["forward"] == el["default"]


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("backend, precision, runtime, entries", [
    ("litert", "fp32", "ai_edge_litert", "signatures"),
    ("coreml", "fp16", "coremltools", "functions"),
])
def test_profile_gets_its_backends_elastic_artifact(trained_tiny, corpus, tmp_path, write_profile, backend, precision,
                                                    runtime, entries):
    """The backend's record picks the elastic writer: a LiteRT profile gets elastic.tflite, a
    Core ML one elastic.mlpackage, with every member's parity checked on its runner and a
    manifest entry that says so."""
    pytest.importorskip(runtime)
    from edge.device.profiles import load_profile
    from edge.plan.elastic import build_elastic
    from exporters.backends import get_backend

    profile = load_profile(write_profile(tmp_path, "phone", backend=backend, precision=precision, elastic=True))
    cfg = trained_tiny.config
    members = {"S": parse_spec("S", cfg), "XL": parse_spec("XL", cfg)}
    entry = build_elastic(trained_tiny, profile, members, "XL", tmp_path, corpus.val)
    suffix = get_backend(backend).suffix
    assert entry["file"] == f"elastic{suffix}" and entry["parity"] == {"S": True, "XL": True}
    meta = json.loads((tmp_path / entry["metadata"]).read_text())
    want = {"prefill_S": "S", "decode_S": "S", "prefill_XL": "XL", "decode_XL": "XL"}
    if backend == "litert":  # and each member's attention window (context 64: the first 32 slots)
        assert meta["decode_windows"] == [32]
        want |= {"decode_S_w32": "S", "decode_XL_w32": "XL"}
    assert meta[entries] == want
    assert meta["sha256"] == entry["sha256"] and meta["parity"]["S"]["passed"]
    assert get_backend(backend).elastic_exporter().load_runner(tmp_path / entry["file"]).members == ["S", "XL"]


def test_one_member_writes_no_elastic_artifact(tmp_path, write_profile):
    """--members naming only the chosen spec's granularity, no frontier: nothing to switch to, so
    the build says so and ships no elastic artifact (a one-method program has no member methods)."""
    import torch

    from edge.device.profiles import load_profile
    from edge.device.table_source import get_cost_table
    from edge.model import MatFormerLM
    from edge.plan.build import BuildSettings, elastic_artifact
    from edge.plan.planner import Plan

    profile = load_profile(write_profile(tmp_path, "board", elastic=True))
    torch.manual_seed(0)
    model = MatFormerLM(CFG)
    table = get_cost_table(profile, CFG, measure="never", path=tmp_path / "table.json").table
    xl = parse_spec("XL", CFG)
    chosen = Candidate(xl, 2.0, cost_fn(xl), param_count(xl, CFG), "uniform")
    settings = BuildSettings(checkpoint=tmp_path / "none", out_root=tmp_path / "build", frontier_members=0,
                             elastic_members=("XL",), progress=False)
    lines = []
    entry = elastic_artifact(profile, model, table, None, settings, Plan(chosen, None, None), tmp_path, lines.append)
    assert entry is None and list(tmp_path.glob("elastic*")) == []
    assert len(lines) == 1 and "no elastic artifact" in lines[0] and "only member" in lines[0]
