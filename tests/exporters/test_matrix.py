"""Every backend x precision on the `tiny` model at a mixed spec: real exports, real runtimes.

ExecuTorch and LiteRT artifacts run in their own runtimes (prefill + 32 KV-cache decode steps on
real validation text). Core ML packages are checked structurally and, off macOS, numerically at
graph level (coremltools value inference, not Apple's kernels); with Apple's runtime on macOS.
"""

from __future__ import annotations

import json
import platform

import pytest

from edge.spec import param_count, parse_spec
from exporters import PRECISIONS, export_model, get_exporter
from exporters import parity as parity_mod
from exporters.base import file_size, sha256

from .conftest import MIXED_SPEC

pytestmark = [pytest.mark.slow, pytest.mark.integration]

COMBOS = [(b, p) for b, ps in PRECISIONS.items() for p in ps]


@pytest.fixture(scope="module")
def out_dir(mixed_exports):
    return mixed_exports.folder


@pytest.fixture(scope="module")
def exported(mixed_exports):
    """(backend, precision) -> Artifact, exported on first use and shared by the session's tests
    (tests/exporters/conftest.py), so no test depends on which ran before it."""
    return mixed_exports


@pytest.fixture(scope="module", params=COMBOS, ids=[f"{b}-{p}" for b, p in COMBOS])
def artifact(request, exported):
    return exported(*request.param)


def test_artifact_file_and_metadata(artifact, trained_tiny, out_dir):
    m = artifact.meta
    assert artifact.path.exists() and artifact.path.name == m["file"]
    assert not [p for p in out_dir.iterdir() if ".tmp-" in p.name]  # no partial leftovers
    assert json.loads(artifact.meta_path.read_text()) == json.loads(json.dumps(m, default=str))
    assert m["sha256"] == sha256(artifact.path) and m["file_size"] == file_size(artifact.path)
    spec = parse_spec(MIXED_SPEC, trained_tiny.config)
    assert m["spec"] == MIXED_SPEC and m["parameters"] == param_count(spec, trained_tiny.config)
    assert m["ffn_sizes"] == [32, 64, 128, 256] and m["tokenizer"]["vocab_size"] == 260
    for name, digest in m["tokenizer"]["files"].items():  # the tokenizer travels beside the artifact
        assert sha256(out_dir / name) == digest
    assert m["context"] == 64 and m["prefill_len"] == 16
    if m["backend"] == "executorch":  # ExecuTorch's LLM-runner convention: one forward, any T
        assert set(m["entry_points"]) == {"forward"}
        assert [t["name"] for t in m["entry_points"]["forward"]["inputs"]] == ["tokens", "input_pos"]
        assert m["entry_points"]["forward"]["inputs"][0]["shape"] == [1, 63]
    elif m["backend"] == "litert":  # LiteRT-LM's convention (see test_litert_lm.py)
        assert set(m["entry_points"]) == {"prefill_16", "decode", "decode_w32"}
        assert [t["name"] for t in m["entry_points"]["decode"]["inputs"]][:3] == ["tokens", "input_pos", "mask"]
        assert m["entry_points"]["prefill_16"]["inputs"][0]["shape"] == [1, 16]
    else:
        assert set(m["entry_points"]) == {"prefill", "decode"}
        assert m["entry_points"]["prefill"]["inputs"][0]["shape"] == [1, 16]
        assert [t["name"] for t in m["entry_points"]["decode"]["inputs"]][:2] == ["token", "position"]
    # every file the artifact is made of, the tokenizer among them, with size and sha256
    for role, f in m["files"].items():
        path = artifact.path.parent / f["file"]
        assert f["bytes"] == file_size(path) and f["sha256"] == sha256(path), role
    assert {"model", "tokenizer", "tokenizer_config"} <= set(m["files"])
    lib = {"executorch": "executorch", "litert": "ai-edge-litert", "coreml": "coremltools"}[m["backend"]]
    assert lib in m["libraries"] and "torch" in m["libraries"]


def test_parity_on_real_text(artifact, trained_tiny, val_stream):
    """The recorded parity passed, and a fresh runner on the final file reproduces it."""
    m = artifact.meta
    p = m["parity"]
    assert p["passed"], parity_mod.summary(p)
    assert p["decode_steps"] == 32 and p["prompt_tokens"] == 16
    if m["precision"] == "fp32":
        assert p["prefill_max_abs"] <= 1e-4 and p["decode_max_abs"] <= 1e-4
    else:
        # KL is finite, at most its own maximum, and small where greedy choices agree
        assert p["greedy_agreement"] >= 0.9 and 0.0 <= p["kl_mean"] <= p["kl_max"] and p["kl_mean"] < 1.0
    expected_kind = "graph-level" if m["backend"] == "coreml" and platform.system() != "Darwin" else "runtime"
    assert p["kind"].startswith(expected_kind)
    runner = get_exporter(m["backend"]).load_runner(artifact.path, m)
    ref = parity_mod.reference(_dense(trained_tiny), parity_mod.prompt_tokens(16, val_stream), steps=4)
    again = parity_mod.check(runner, ref, m["precision"])
    assert abs(again["prefill_max_abs"] - p["prefill_max_abs"]) <= 1e-3


def _dense(model):
    from edge.slicing import slice_model

    return slice_model(model, parse_spec(MIXED_SPEC, model.config))


def test_entry_points_match_what_the_runtime_sees(artifact):
    """Generic runners build inputs from the metadata: it must equal the file's own view."""
    m = artifact.meta
    eps = m["entry_points"]
    if m["backend"] == "executorch":
        from executorch.runtime import Runtime

        prog = Runtime.get().load_program(artifact.path)
        for name, ep in eps.items():
            meta = prog.metadata(name)
            shapes = [list(meta.input_tensor_meta(i).sizes()) for i in range(meta.num_inputs())]
            assert shapes == [t["shape"] for t in ep["inputs"]]
            assert [list(meta.output_tensor_meta(i).sizes()) for i in range(meta.num_outputs())] == \
                [t["shape"] for t in ep["outputs"]]
    elif m["backend"] == "litert":
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=str(artifact.path))
        for name, ep in eps.items():
            details = interp.get_signature_runner(name).get_input_details()
            for t in ep["inputs"]:
                d = details[t["name"]]
                assert list(d["shape"]) == t["shape"] and d["dtype"].__name__ == t["dtype"]
    else:
        s = m["structure"]
        for name, ep in eps.items():
            assert s["functions"][name]["inputs"] == [{k: t[k] for k in ("name", "shape", "dtype")}
                                                     for t in ep["inputs"]]
            assert s["functions"][name]["outputs"] == ep["outputs"]


def test_coreml_package_structure(artifact):
    m = artifact.meta
    if m["backend"] != "coreml":
        pytest.skip("Core ML only")
    from exporters.coreml import structure

    s = structure(artifact.path)  # read the saved package again, not the recorded copy
    assert s == m["structure"]
    assert set(s["functions"]) == {"prefill", "decode"} and s["default_function"] == "prefill"
    assert all(f["states"] == [] for f in s["functions"].values())  # explicit cache, see coreml.py
    ops = set().union(*(set(o) for o in s["op_types"].values()))
    assert {"linear", "matmul", "softmax", "gather"} <= ops
    compressed = {"fp16": set(), "int8": {"constexpr_blockwise_shift_scale"}, "pal4": {"constexpr_lut_to_dense"}}
    assert {o for o in ops if o.startswith("constexpr_")} == compressed[m["precision"]]
    # fp16 weights: 2 bytes per parameter, stored once for both functions (+ small tables).
    assert 2 * m["parameters"] <= s["weight_bytes"] <= 2.3 * m["parameters"] or m["precision"] != "fp16"


def test_quantized_artifacts_are_smaller(exported):
    """int8 well under fp32; 4-bit under 8-bit (exports whatever the matrix has not yet)."""
    arts = {combo: exported(*combo) for combo in COMBOS}
    size = {k: a.meta["file_size"] for k, a in arts.items()}
    # The tiny model's fp32 tied embedding is 10% of its weights and stays float: bound at 0.6.
    assert size[("executorch", "int8")] <= 0.6 * size[("executorch", "fp32")]
    assert size[("executorch", "8da4w")] < size[("executorch", "int8")]
    assert size[("litert", "int8")] <= 0.6 * size[("litert", "fp32")]
    w = {p: arts[("coreml", p)].meta["structure"]["weight_bytes"] for p in PRECISIONS["coreml"]}
    assert w["int8"] <= 0.6 * w["fp16"] and w["pal4"] <= 0.6 * w["int8"]


@pytest.mark.skipif(platform.system() != "Darwin", reason="Core ML prediction needs macOS (Apple's runtime)")
def test_coreml_runtime_on_macos(artifact, trained_tiny, val_stream):
    m = artifact.meta
    if m["backend"] != "coreml":
        pytest.skip("Core ML only")
    from exporters.coreml import CoreMLRunner

    ref = parity_mod.reference(_dense(trained_tiny), parity_mod.prompt_tokens(16, val_stream))
    result = parity_mod.check(CoreMLRunner(artifact.path), ref, m["precision"])
    assert result["passed"], parity_mod.summary(result)


def test_coreml_fp16_survives_a_residual_stream_of_thousands(tmp_path, val_stream):
    """A real model's residual stream reaches thousands (SmolLM2-135M: FFN units near 3,000) and
    x² overflows fp16 inside RMSNorm: every logit went wrong (greedy agreement 0). The norm's
    statistic is computed in fp32 (exporters/coreml.py), the rest stays fp16."""
    import torch

    from edge.config import MatFormerConfig
    from edge.model import MatFormerLM

    torch.manual_seed(0)
    model = MatFormerLM(MatFormerConfig.from_preset("tiny", tie_embeddings=False)).eval()
    with torch.no_grad():
        model.tok_emb.weight.mul_(1e5)  # embeddings (so the residual) of ~2,000: x² ~ 4e6 > 65,504
    art = export_model(model, "coreml", "fp16", tmp_path, spec=("XL",) * 4, val_stream=val_stream)
    p = art.meta["parity"]
    assert p["passed"] and p["greedy_agreement"] == 1.0 and p["non_finite_logits"] == 0 and p["kl_mean"] < 1e-3
