"""The compiled fine-tune forward (edge.compiled) equals the eager model: logits and gradients."""

import pytest
import torch

from edge import compiled
from edge.config import MatFormerConfig
from edge.model import MatFormerLM

pytestmark = pytest.mark.skipif(not compiled.available(), reason="torch.compile on CPU needs a C++ compiler")


def test_values_and_gradients_match_eager_for_uniform_and_mixed_specs():
    torch.manual_seed(0)
    model = MatFormerLM(MatFormerConfig(vocab_size=64, d_model=32, n_layers=3, n_heads=4, n_kv_heads=2, d_ff=64,
                                        max_context=32, granularity_fractions=(0.5, 1.0),
                                        granularity_names=("S", "XL")))
    net = compiled.CompiledForward(model)
    x = torch.randint(0, 64, (2, 16))
    for spec in (("S",) * 3, ("XL", "S", "XL")):  # a uniform and a Mix'n'Match spec
        grads = []
        for f in (model, net):
            model.zero_grad()
            out = f(x, spec)  # (B, T, V)
            (out.square().mean()).backward()
            grads.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
        (want, want_g), (got, got_g) = grads
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
        assert any(g.abs().sum() > 0 for g in got_g)
        for a, b in zip(got_g, want_g):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="max_context"):
        net(torch.zeros(1, 33, dtype=torch.long), ("S",) * 3)
