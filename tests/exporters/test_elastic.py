"""An elastic .pte on the real ExecuTorch runtime: every member against eager, switching members
over the one shared KV cache, and speculative decoding equal to the verifier's greedy output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge.generate import forward_cached
from edge.model import KVCache
from edge.spec import parse_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]
pytest.importorskip("executorch.runtime")

CONTEXT = 48
MEMBERS = {"S": "S", "mix": "S,M,L,XL", "XL": "XL"}  # cheapest first; the default is "mix"


@pytest.fixture(scope="module")
def elastic(trained_tiny, tmp_path_factory):
    from exporters.elastic import export_elastic
    from exporters.elastic_runner import ElasticRunner

    cfg = trained_tiny.config
    members = {n: parse_spec(s, cfg) for n, s in MEMBERS.items()}
    path = tmp_path_factory.mktemp("elastic") / "model.pte"
    meta = export_elastic(trained_tiny, members, path, context=CONTEXT, default="mix")
    return ElasticRunner(path, list(MEMBERS)), members, meta


def test_methods_metadata_and_constants(elastic):
    runner, members, meta = elastic
    names = set(runner.program.method_names)
    assert {"forward", "forward_S", "forward_mix", "forward_XL", "get_max_seq_len", "get_bos_id"} <= names
    assert runner.context == CONTEXT and runner.members == list(MEMBERS)
    assert meta["methods"]["forward"] == "mix" and meta["envelope"] == "XL,XL,XL,XL"


@pytest.mark.parametrize("member", [None, "S", "mix", "XL"])
def test_member_matches_eager(elastic, trained_tiny, val_stream, member):
    """Prefill 12 real tokens, then 8 teacher-forced decode steps: logits within 1e-4 of eager."""
    runner, members, _ = elastic
    spec = members[member or "mix"]  # None: the `forward` method, i.e. the default member

    def run(tokens, pos):  # the member's own method, by name (None: `forward`)
        out = runner.method(member).execute([torch.as_tensor(tokens, dtype=torch.int64).reshape(1, -1),
                                             torch.tensor([pos], dtype=torch.int64)])
        return out[0].numpy()[0]

    seq = val_stream[:20].long()
    got = run(seq[:12].numpy(), 0)
    with torch.no_grad():
        ref = trained_tiny(seq[None, :12], spec)[0].numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4)
    for t in range(12, 20):
        step = run(seq[t:t + 1].numpy(), t)[-1]
        with torch.no_grad():
            ref = trained_tiny(seq[None, :t + 1], spec)[0, -1].numpy()
        np.testing.assert_allclose(step, ref, atol=1e-4)


def test_switching_reads_the_shared_cache(elastic, trained_tiny, val_stream):
    """Member changes every token; each step matches eager with the same schedule over ONE cache
    (what another member wrote is read back), and differs from a member's own-cache logits."""
    runner, members, _ = elastic
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
        np.testing.assert_allclose(got, ref, atol=1e-4)
        own_differs = max(own_differs, float(np.abs(got - own).max()))
    assert own_differs > 1e-3  # the K/V really came from other members


@pytest.mark.parametrize("k", [1, 2, 4])
def test_speculative_equals_verifier_greedy(elastic, val_stream, k):
    from edge.device.elastic import greedy, speculative

    runner, _, _ = elastic
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

    runner, _, _ = elastic
    windows = [val_stream[i * 24:(i + 1) * 24].tolist() for i in range(2)]
    none = switching_quality(runner, windows, ["XL"], 4)  # never switches: both ways agree
    assert none["agreement"] == 1.0 and abs(none["loss_shared"] - none["loss_reprefill"]) < 1e-4
    sw = switching_quality(runner, windows, ["S", "XL"], 1)
    assert sw["tokens"] == 46 and sw["loss_shared"] != sw["loss_reprefill"]


def test_standalone_member_and_size(trained_tiny, tmp_path, val_stream, elastic):
    """A dense slice exported the same way runs as its own artifact; the elastic file stores the
    weights once: far below the sum of its members (pre-sliced copies would be over 2x XL alone).
    Measured on this tiny model: 1.13x XL alone, the extra methods' graphs dominate at this size
    (the 1.05x goal of the issue is for real models; bench/elastic.py prints the ratio)."""
    from edge.slicing import slice_model
    from exporters.elastic import export_elastic
    from exporters.elastic_runner import ElasticRunner

    runner, members, _ = elastic
    path = tmp_path / "xl.pte"
    export_elastic(slice_model(trained_tiny, members["XL"]), {"XL": None}, path, context=CONTEXT)
    alone = ElasticRunner(path)
    seq = val_stream[:12].long().numpy()
    np.testing.assert_allclose(alone.run(seq, 0), runner.run(seq, 0, "XL"), atol=1e-4)
    assert runner.path.stat().st_size <= 1.25 * path.stat().st_size
