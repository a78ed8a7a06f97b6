"""The blocked FFN transform is exact: every granularity of every layer, and mixed specs."""

from __future__ import annotations

import pytest
import torch

from edge.spec import parse_spec
from exporters.blocked import BlockedFFN, blocked_model, blocks_for, envelope, granularity_bounds


def test_bounds_and_blocks(tiny_config):
    assert granularity_bounds(tiny_config) == (0, 32, 64, 128, 256)
    assert granularity_bounds(tiny_config, "M") == (0, 32, 64)
    assert blocks_for(("S", "M", "L", "XL"), tiny_config) == [1, 2, 3, 4]
    assert envelope([("S", "XL", "M", "S"), ("M", "S", "S", "S")], tiny_config) == ("M", "XL", "M", "S")


@pytest.mark.parametrize("spec", ["S", "M", "L", "XL", "S,M,L,XL", "XL,S,XL,S"])
def test_blocked_ffn_equals_nested_slice(tiny_model, val_tokens, spec):
    cfg = tiny_model.config
    spec = parse_spec(spec, cfg)
    blocked = blocked_model(tiny_model)
    x = tiny_model.tok_emb(val_tokens[:1, :16])  # (1, 16, d) real activations
    for layer, b_layer, g in zip(tiny_model.layers, blocked.layers, spec):
        with torch.no_grad():
            ref = layer.ffn(x, cfg.widths[g])
            got = b_layer.ffn(x, blocks_for((g,), cfg)[0])
        torch.testing.assert_close(got, ref, atol=2e-6, rtol=1e-5)


def test_envelope_stores_only_needed_blocks(tiny_model):
    blocked = blocked_model(tiny_model, ["S", "M", "XL", "S"])
    assert [layer.ffn.n_blocks for layer in blocked.layers] == [1, 2, 4, 1]
    assert not any(p.requires_grad for p in blocked.parameters())
    with pytest.raises(ValueError, match="n_blocks=2"):
        blocked.layers[0].ffn(torch.zeros(1, 1, 64), 2)


def test_from_nested_refuses_too_many_units(tiny_model):
    with pytest.raises(ValueError, match="hidden units"):
        BlockedFFN.from_nested(tiny_model.layers[0].ffn, (0, 128, 512))
