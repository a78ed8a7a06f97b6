import pytest
import torch

from edge.model import MatFormerLM
from edge.slicing import slice_model
from edge.spec import param_count, parse_spec


@pytest.mark.parametrize("text", ["S", "M", "L", "XL", "S,M,L,XL", "XL,S,L,M", "S*3,XL"])
def test_slice_matches_universal(tiny_model, val_tokens, text):
    spec = parse_spec(text, tiny_model.config)
    dense = slice_model(tiny_model, spec)
    with torch.no_grad():
        diff = (tiny_model(val_tokens, spec) - dense(val_tokens)).abs().max().item()
    assert diff <= 1e-5
    assert sum(p.numel() for p in dense.parameters()) == param_count(spec, tiny_model.config)
    assert list(dense.config.ffn_sizes) == [tiny_model.config.widths[g] for g in spec]


def test_granularities_differ(tiny_model, val_tokens):
    with torch.no_grad():
        s = tiny_model(val_tokens, ("S",) * 4)
        xl = tiny_model(val_tokens, ("XL",) * 4)
    assert (s - xl).abs().max() > 1e-4  # the spec really changes the computation


def test_prefix_nesting(tiny_model):
    s = slice_model(tiny_model, ("S",) * 4)
    xl = slice_model(tiny_model, ("XL",) * 4)
    m = tiny_model.config.widths["S"]
    for ls, lx in zip(s.layers, xl.layers):
        assert torch.equal(ls.ffn.w_gate.weight, lx.ffn.w_gate.weight[:m])
        assert torch.equal(ls.ffn.w_up.weight, lx.ffn.w_up.weight[:m])
        assert torch.equal(ls.ffn.w_down.weight, lx.ffn.w_down.weight[:, :m])
        assert torch.equal(ls.attn.wq.weight, lx.attn.wq.weight)


def test_causal(tiny_model, val_tokens):
    """Changing a later token must not change earlier logits."""
    x = val_tokens[:1].clone()
    y = x.clone()
    y[0, -1] = (y[0, -1] + 1) % 256
    with torch.no_grad():
        a, b = tiny_model(x, ("M",) * 4), tiny_model(y, ("M",) * 4)
    assert torch.allclose(a[:, :-1], b[:, :-1], atol=1e-6) and not torch.allclose(a[:, -1], b[:, -1])


def test_dense_model_rejects_spec(tiny_model, val_tokens):
    dense = slice_model(tiny_model, ("S",) * 4)
    with pytest.raises(ValueError, match="without a spec"):
        dense(val_tokens, ("S",) * 4)


def test_no_global_width_state(tiny_model, val_tokens):
    """Interleaving specs gives the same results as running each alone."""
    with torch.no_grad():
        first = tiny_model(val_tokens, ("S",) * 4)
        tiny_model(val_tokens, ("XL",) * 4)
        again = tiny_model(val_tokens, ("S",) * 4)
    assert torch.equal(first, again)


def test_grouped_kv_heads_change_shapes(tiny_config):
    m = MatFormerLM(tiny_config)
    assert m.layers[0].attn.wk.weight.shape == (tiny_config.n_kv_heads * tiny_config.head_dim, tiny_config.d_model)


def test_spec_scorer_matches_eval_loss(tiny_model):
    from edge.data import load_corpus
    from edge.evaluate import SpecScorer, eval_loss

    val = load_corpus(max_bytes=400_000).val
    scorer = SpecScorer(tiny_model, val, 32, 1024, max_cached_prefixes=3)
    for spec in [("S", "S", "M", "XL"), ("S", "S", "M", "L"), ("XL",) * 4, ("S", "S", "L", "L"), ("S", "S", "M", "XL")]:
        assert scorer.loss(spec) == pytest.approx(eval_loss(tiny_model, val, spec, 32, 1024), abs=1e-5)
    assert len(scorer._prefix) <= 3


def test_slice_is_a_copy(tiny_model):
    """A sliced model owns its weights: changing them leaves the universal model as it was."""
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    dense = slice_model(tiny_model, ("XL",) * 4)
    with torch.no_grad():
        for p in dense.parameters():
            p.add_(1.0)
    assert all(torch.equal(v, before[k]) for k, v in tiny_model.state_dict().items())


def test_a_shared_slice_keeps_whole_tensors_and_copies_cut_ones(tiny_model, val_tokens):
    """share=True (the exporters): tensors the slice keeps whole are the universal model's own
    storage, cut FFN prefixes are copies (a deepcopy must not drag the full tensor along), and
    the logits are those of the copying slice."""
    n = tiny_model.config.n_layers
    for spec in (("XL",) * n, ("S",) + ("XL",) * (n - 1)):
        shared, copied = slice_model(tiny_model, spec, share=True), slice_model(tiny_model, spec)
        src = {k: v.data_ptr() for k, v in tiny_model.state_dict().items()}
        for name, w in shared.state_dict().items():
            whole = w.shape == tiny_model.state_dict()[name].shape
            assert (w.data_ptr() == src[name]) == whole, name
            assert w.untyped_storage().nbytes() == w.numel() * w.element_size(), name  # no view of a larger tensor
        with torch.no_grad():
            assert torch.equal(shared(val_tokens), copied(val_tokens))
    assert all(p.requires_grad for p in tiny_model.parameters())
