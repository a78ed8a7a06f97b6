"""KV-cached decoding matches the full forward; speculative decoding equals the verifier's greedy."""

from __future__ import annotations

import pytest
import torch

from edge.generate import KVCache, forward_cached, greedy_generate, speculative_generate, timed_greedy
from edge.slicing import slice_model


def _greedy_full(model, prompt, n_new, spec):
    """Reference: greedy decoding by re-running the full (uncached) forward every step."""
    seq = list(prompt)
    for _ in range(n_new):
        seq.append(int(model(torch.tensor([seq]), spec)[0, -1].argmax()))
    return seq[len(prompt):]


@pytest.fixture
def model64(tiny_model):
    """float64 so that chunked vs one-token verification cannot flip an argmax by rounding."""
    return tiny_model.double()


@pytest.mark.parametrize("spec", ["S", "XL", "mixed"])
def test_cached_forward_matches_full_forward(tiny_model, val_tokens, spec):
    L = tiny_model.config.n_layers
    spec = ("S", "M", "L", "XL")[:L] if spec == "mixed" else (spec,) * L
    x = val_tokens[:1, :40]
    full = tiny_model(x, spec)  # (1, 40, V)
    cache = KVCache(tiny_model)
    parts = [forward_cached(tiny_model, x[:, a:b], cache, spec) for a, b in ((0, 17), (17, 18), (18, 40))]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 40


def test_greedy_generate_matches_uncached(model64, val_tokens):
    prompt = val_tokens[0, :12].tolist()
    spec = ("M",) * model64.config.n_layers
    assert greedy_generate(model64, prompt, 20, spec) == _greedy_full(model64, prompt, 20, spec)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_speculative_equals_verifier_greedy(model64, val_tokens, shared, k):
    L = model64.config.n_layers
    prompt = val_tokens[1, :10].tolist()
    target = greedy_generate(model64, prompt, 30, ("XL",) * L)
    stats = speculative_generate(model64, ("S",) * L, model64, ("XL",) * L, prompt, 30, k=k,
                                 shared_cache=shared)
    assert stats.tokens == target
    assert 0 <= stats.accepted <= stats.drafted == k * stats.rounds


def test_speculative_with_identical_draft_accepts_everything(model64, val_tokens):
    """Draft == verifier: every draft is accepted (checks the cache bookkeeping, not luck)."""
    L = model64.config.n_layers
    prompt = val_tokens[0, :8].tolist()
    for shared in (False, True):
        stats = speculative_generate(model64, ("L",) * L, model64, ("L",) * L, prompt, 24, k=4,
                                     shared_cache=shared)
        assert stats.acceptance == 1.0
        assert stats.tokens == greedy_generate(model64, prompt, 24, ("L",) * L)


def test_speculative_with_two_dense_models(model64, val_tokens):
    """Baseline pair: a sliced dense draft and the universal verifier as separate models."""
    L = model64.config.n_layers
    draft = slice_model(model64, ("S",) * L)
    prompt = val_tokens[1, :6].tolist()
    stats = speculative_generate(draft, None, model64, None, prompt, 25, k=3)
    assert stats.tokens == greedy_generate(model64, prompt, 25, None)
    assert timed_greedy(model64, prompt, 25).tokens == stats.tokens
    with pytest.raises(ValueError, match="shared KV cache needs one model"):
        speculative_generate(draft, None, model64, None, prompt, 5, k=3, shared_cache=True)


def test_cache_overflow_is_reported(tiny_model):
    cache = KVCache(tiny_model, 8)
    with pytest.raises(ValueError, match="past the cache"):
        forward_cached(tiny_model, torch.zeros(1, 9, dtype=torch.long), cache)
