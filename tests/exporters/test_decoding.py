"""The export-only decoding wrappers reproduce the model: prefill, KV-cache decode, padding."""

from __future__ import annotations

import pytest
import torch

from edge.config import MatFormerConfig
from edge.model import MatFormerLM
from edge.slicing import slice_model
from edge.spec import parse_spec
from exporters.decoding import entry_points, example_inputs, make_wrapper


@pytest.fixture
def dense(val_stream):
    torch.manual_seed(0)
    cfg = MatFormerConfig.from_preset("tiny")
    return slice_model(MatFormerLM(cfg).eval(), parse_spec("S,M,L,XL", cfg))


def _run(wrapper, tokens, T):
    """Prefill the first T tokens, decode the rest one by one: logits (1, len, V)."""
    io = wrapper.__class__.__name__ == "IOCacheLM"
    out = wrapper.prefill(tokens[:, :T])
    logits, caches = (out[0], out[1:]) if io else (out, ())
    steps = []
    for p in range(T, tokens.shape[1]):
        out = wrapper.decode(tokens[:, p:p + 1], torch.tensor([p]), *caches)
        step, caches = (out[0], out[1:]) if io else (out, ())
        steps.append(step)
    return torch.cat([logits] + steps, dim=1)


@pytest.mark.parametrize("strategy", ["buffers", "io"])
@torch.no_grad()
def test_prefill_and_decode_match_the_model(dense, val_stream, strategy):
    tokens = val_stream[:48].view(1, 48)
    wrapper = make_wrapper(dense, 64, strategy, prefill_len=16)
    got = _run(wrapper, tokens, 16)
    torch.testing.assert_close(got, dense(tokens), atol=2e-5, rtol=0)


@torch.no_grad()
def test_right_padded_prompt_then_decode_is_exact(dense, val_stream):
    """The documented recipe for prompts shorter than T: pad right, decode from the true length."""
    from edge.data import PAD

    tokens = val_stream[:30].view(1, 30)
    n = 10  # real prompt length < T = 16
    wrapper = make_wrapper(dense, 64, "buffers", prefill_len=16)
    padded = torch.cat([tokens[:, :n], torch.full((1, 16 - n), PAD)], dim=1)
    logits = wrapper.prefill(padded)
    steps = [wrapper.decode(tokens[:, p:p + 1], torch.tensor([p])) for p in range(n, 30)]
    ref = dense(tokens)
    torch.testing.assert_close(logits[:, :n], ref[:, :n], atol=2e-5, rtol=0)
    torch.testing.assert_close(torch.cat(steps, 1), ref[:, n:], atol=2e-5, rtol=0)


def test_wrapper_leaves_the_model_untouched(dense):
    before = {k: v.clone() for k, v in dense.state_dict().items()}
    make_wrapper(dense, 64, "buffers", prefill_len=16)
    assert all(p.requires_grad for p in dense.parameters())
    assert all(torch.equal(before[k], v) for k, v in dense.state_dict().items())


def test_entry_points_describe_the_example_inputs(dense):
    for strategy in ("buffers", "io"):
        wrapper = make_wrapper(dense, 64, strategy, prefill_len=16)
        eps = entry_points(wrapper, 16)
        args = example_inputs(wrapper, 16)
        for name in ("prefill", "decode"):
            assert [t["shape"] for t in eps[name]["inputs"]] == [list(a.shape) for a in args[name]]
        assert len(eps["decode"]["state"]) == (8 if strategy == "buffers" else 0)


def test_bad_sizes_are_rejected(dense):
    with pytest.raises(ValueError, match="max_context"):
        make_wrapper(dense, 65, "buffers", prefill_len=16)
    with pytest.raises(ValueError, match="prefill length"):
        make_wrapper(dense, 64, "io", prefill_len=65)
