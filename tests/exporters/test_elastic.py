"""Elastic artifacts on the real runtimes (an ExecuTorch .pte on executorch.runtime, a LiteRT
.tflite on ai_edge_litert; a Core ML .mlpackage on Apple's runtime on macOS, elsewhere through
coremltools' value inference of the saved graph): every member against eager, switching members over the one shared KV
cache, and speculative decoding equal to the verifier's greedy output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge.generate import forward_cached
from edge.model import KVCache
from edge.spec import parse_spec
from exporters.backends import get_backend

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONTEXT = 48
MEMBERS = {"S": "S", "mix": "S,M,L,XL", "XL": "XL"}  # cheapest first; the default is "mix"
# The module each backend's runner needs; Core ML runs on Apple's runtime on macOS and elsewhere
# through coremltools' value inference of the saved graph (fp16: a looser tolerance).
RUNTIMES = {"executorch": "executorch.runtime", "litert": "ai_edge_litert", "coreml": "coremltools"}
ATOL = {"executorch": 1e-4, "litert": 1e-4, "coreml": 1e-2}  # fp16: ~1e-3 of logits up to ~10


@pytest.fixture(scope="module", params=list(RUNTIMES))
def elastic(request, trained_tiny, tmp_path_factory):
    """(runner, members, metadata, backend module) of one elastic artifact per backend."""
    pytest.importorskip(RUNTIMES[request.param])
    backend = get_backend(request.param)
    module = backend.elastic_exporter()
    cfg = trained_tiny.config
    members = {n: parse_spec(s, cfg) for n, s in MEMBERS.items()}
    path = tmp_path_factory.mktemp(f"elastic-{backend.name}") / f"model{backend.suffix}"
    meta = module.export_elastic(trained_tiny, members, path, context=CONTEXT, default="mix")
    return module.load_runner(path, list(MEMBERS)), members, meta, module


def atol(runner) -> float:
    return ATOL[{".pte": "executorch", ".tflite": "litert", ".mlpackage": "coreml"}[runner.path.suffix]]


def test_entry_points_and_metadata(elastic, val_stream):
    runner, members, meta, _ = elastic
    assert runner.context == CONTEXT and runner.members == list(MEMBERS)
    assert meta["default"] == "mix" and meta["envelope"] == "XL,XL,XL,XL"
    assert meta["members"] == {n: ",".join(s) for n, s in members.items()}
    if "methods" in meta:  # ExecuTorch: forward = the default member, plus the LLM runner's constants
        names = set(runner.program.method_names)
        assert {"forward", "forward_S", "forward_mix", "forward_XL", "get_max_seq_len", "get_bos_id"} <= names
        assert meta["methods"]["forward"] == "mix"
        seq = val_stream[:12].long()  # `forward` (what the stock LLM runner calls) runs the default member
        out = runner.method(None).execute([seq[None], torch.tensor([0])])[0].numpy()[0]
        np.testing.assert_allclose(out, runner.run(seq.numpy(), 0, "mix"), atol=1e-5)
    elif "signatures" in meta:  # LiteRT: prefill_<m>, decode_<m> and decode_<m>_w<N> per member
        assert meta["decode_windows"] == [32]  # C = 48: C/8..C/2 raised to the 32-slot floor
        assert set(runner.session.signatures) == set(meta["signatures"]) == set(meta["entry_points"])
        assert {f"{k}_{m}{w}" for m in MEMBERS for k, w in (("prefill", ""), ("decode", ""), ("decode", "_w32"))} \
            == set(meta["signatures"])
        assert meta["entry_points"]["decode_S_w32"]["inputs"][2]["shape"] == [1, 1, 1, 32]
        assert runner.decode_signature("S", 31) == "decode_S_w32" and runner.decode_signature("S", 32) == "decode_S"
    else:  # Core ML: functions prefill_<m> and decode_<m> of one ML program, the weights stored once
        st = meta["structure"]
        assert set(st["functions"]) == {f"{k}_{m}" for m in MEMBERS for k in ("prefill", "decode")}
        assert st["default_function"] == "decode_mix"


@pytest.mark.parametrize("member", ["S", "mix", "XL"])
def test_member_matches_eager(elastic, trained_tiny, val_stream, member):
    """Prefill 12 real tokens (LiteRT: a full and a padded chunk), 8 teacher-forced decode steps,
    16 more tokens in one call, then decode steps past slot 32 (LiteRT: from the decode_<m>_w32
    window to the full decode): logits within 1e-4 of eager."""
    runner, members, _, _ = elastic
    spec = members[member]
    seq = val_stream[:36].long()
    got = runner.run(seq[:12].numpy(), 0, member)
    with torch.no_grad():
        ref = trained_tiny(seq[None, :12], spec)[0].numpy()
    np.testing.assert_allclose(got, ref, atol=atol(runner))
    got = {t: runner.run(seq[t:t + 1].numpy(), t, member)[-1] for t in range(12, 20)}
    got.update(enumerate(runner.run(seq[20:34].numpy(), 20, member), start=20))
    got.update({t: runner.run(seq[t:t + 1].numpy(), t, member)[-1] for t in (34, 35)})
    with torch.no_grad():
        ref = trained_tiny(seq[None], spec)[0].numpy()  # causal: row t is the logits after seq[:t + 1]
    for t, step in got.items():
        np.testing.assert_allclose(step, ref[t], atol=atol(runner), err_msg=f"position {t}")


def test_switching_reads_the_shared_cache(elastic, trained_tiny, val_stream):
    """Member changes every token; each step matches eager with the same schedule over ONE cache
    (what another member wrote is read back), and differs from a member's own-cache logits."""
    runner, members, _, _ = elastic
    order = ["S", "XL", "mix"]
    seq = val_stream[:24].long()
    cache = KVCache(trained_tiny, CONTEXT)
    runner.run(seq[:8].numpy(), 0, "XL")
    with torch.no_grad():
        forward_cached(trained_tiny, seq[None, :8], cache, members["XL"])
    own_differs = 0.0
    for t in range(8, 24):
        m = order[t % 3]
        got = runner.run(seq[t:t + 1].numpy(), t, m)[-1]
        with torch.no_grad():
            ref = forward_cached(trained_tiny, seq[None, t:t + 1], cache, members[m])[0, -1].numpy()
            own = trained_tiny(seq[None, :t + 1], members[m])[0, -1].numpy()
        np.testing.assert_allclose(got, ref, atol=atol(runner))
        own_differs = max(own_differs, float(np.abs(got - own).max()))
    assert own_differs > 1e-3  # the K/V really came from other members


@pytest.mark.parametrize("k", [1, 2, 4])
def test_speculative_equals_verifier_greedy(elastic, val_stream, k):
    from edge.device.elastic import greedy, speculative

    runner, _, _, _ = elastic
    prompt = val_stream[:10].tolist()
    want = greedy(runner, prompt, 24, "XL")
    st = speculative(runner, prompt, 24, "S", "XL", k)
    assert st.tokens == want
    assert st.rounds < 24 and 0 < st.drafted and 0 <= st.accepted <= st.drafted
    # the draft equal to the verifier accepts every drafted token
    same = speculative(runner, prompt, 24, "XL", "XL", k)
    assert same.tokens == want and same.accepted == same.drafted


def test_switching_quality(elastic, val_stream):
    from edge.device.elastic import switching_quality

    runner, _, _, _ = elastic
    windows = [val_stream[i * 24:(i + 1) * 24].tolist() for i in range(2)]
    none = switching_quality(runner, windows, ["XL"], 4)  # never switches: both ways agree
    assert none["agreement"] == 1.0 and abs(none["loss_shared"] - none["loss_reprefill"]) < atol(runner)
    sw = switching_quality(runner, windows, ["S", "XL"], 1)
    assert sw["tokens"] == 46 and sw["loss_shared"] != sw["loss_reprefill"]


def test_bad_calls_are_refused(elastic, val_stream):
    from exporters.base import ExportError

    runner, _, _, _ = elastic
    with pytest.raises(ExportError, match="do not fit the context"):
        runner.run(val_stream[:4].numpy(), CONTEXT - 2, "XL")
    with pytest.raises(ExportError, match="no method|no signatures|no functions|no member"):
        type(runner)(runner.path, ["S", "XXL"])


def test_standalone_member_and_size(trained_tiny, tmp_path, val_stream, elastic):
    """A dense slice exported the same way runs as its own artifact; the elastic file stores the
    weights once: far below the sum of its members (pre-sliced copies would be over 2x XL alone).
    Measured on this tiny model: 1.13x (ExecuTorch) and 1.35x (LiteRT: 9 signatures, windows
    included, against XL alone's 3) XL alone; the extra entry points' graphs (~70 kB each) dominate
    at this size (bench/elastic.py prints the ratio of real sizes). Core
    ML keeps graphs and weights apart: its weight file is 1.004x XL alone's."""
    from edge.slicing import slice_model

    runner, members, _, module = elastic
    path = tmp_path / f"xl{runner.path.suffix}"
    module.export_elastic(slice_model(trained_tiny, members["XL"]), {"XL": None}, path, context=CONTEXT)
    alone = module.load_runner(path)
    assert alone.members == ["XL"] or alone.members == []
    seq = val_stream[:12].long().numpy()
    np.testing.assert_allclose(alone.run(seq, 0, alone.members[0] if alone.members else None),
                               runner.run(seq, 0, "XL"), atol=atol(runner))
    if path.suffix == ".mlpackage":  # a folder: its weight file holds the weights, once
        weights = "Data/com.apple.CoreML/weights/weight.bin"
        assert (runner.path / weights).stat().st_size <= 1.05 * (path / weights).stat().st_size
    else:
        assert runner.path.stat().st_size <= 1.5 * path.stat().st_size
