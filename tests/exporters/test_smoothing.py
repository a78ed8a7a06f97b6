"""Activation smoothing before dynamic int8 (exporters/smoothing.py): exact in fp32, undone on
exit, and what makes int8 artifacts of a model with outlier channels agree with eager again."""

from __future__ import annotations

import copy

import pytest
import torch

from exporters import smoothing
from tests.exporters.conftest import with_outliers


def test_smoothing_keeps_every_logit_and_restores_every_weight(trained_tiny, corpus, val_tokens):
    model = with_outliers(trained_tiny)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        ref = model(val_tokens)
    with smoothing.smoothed(model, corpus.train[:512], head="separate") as summary:
        assert model.lm_head is not None  # a tied model gets a head of its own inside
        changed = [k for k, v in model.state_dict().items() if k in before and not torch.equal(v, before[k])]
        assert any("ffn_norm" in k for k in changed) and any("w_down" in k for k in changed)
        with torch.no_grad():
            assert torch.equal(model(val_tokens), ref)  # powers of two: bit-identical fp32
    assert summary["folds"] == 3 * model.config.n_layers + 1
    assert summary["largest_scale"] >= 16  # the planted channels were scaled back down
    assert model.lm_head is None
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_tied_table_smoothed_for_the_head_keeps_one_table_and_every_logit(trained_tiny, corpus, val_tokens):
    model = with_outliers(trained_tiny)
    table = model.tok_emb.weight
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        ref = model(val_tokens)
    with smoothing.smoothed(model, corpus.train[:512], head="tied") as summary:
        assert model.lm_head is None and model.tok_emb.weight is table  # still one table
        assert not torch.equal(table, before["tok_emb.weight"])  # its columns scaled for the head
        with torch.no_grad():
            assert torch.equal(model(val_tokens), ref)
    assert summary["head"] == "tied" and summary["folds"] == 3 * model.config.n_layers + 1
    assert isinstance(model.tok_emb, torch.nn.Embedding)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_scales_are_powers_of_two_and_one_where_a_channel_is_silent():
    act = torch.tensor([0.0, 3.0, 1000.0, 1e-3])
    w = torch.tensor([[0.5, 0.0, 0.01, 2.0], [0.1, 0.0, 0.02, 1.0]])  # (out 2, in 4)
    s = smoothing._pow2_scales(act, [w], 0.5)
    log2 = torch.log2(s)
    assert torch.equal(log2, log2.round())
    assert s[0] == 1 and s[1] == 1  # no activation / no weight: left alone
    assert s[2] > 64 and s[3] < 1  # sqrt(1000 / 0.02) ~ 224 -> 256; sqrt(1e-3 / 2) -> 1/32


def test_an_interrupt_inside_restores_the_model(trained_tiny, corpus):
    model = with_outliers(trained_tiny)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(KeyboardInterrupt):
        with smoothing.smoothed(model, corpus.train[:256], head="separate"):
            raise KeyboardInterrupt
    assert model.lm_head is None
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_no_calibration_text_is_one_clear_error(tiny_model):
    from exporters.base import ExportError

    with pytest.raises(ExportError, match="calibration text: got 0 tokens"):
        with smoothing.smoothed(tiny_model, torch.zeros(0, dtype=torch.long), head="separate"):
            pass
    assert tiny_model.lm_head is None


def _plain_int8_kl(model, prompt: torch.Tensor) -> float:
    """KL(fp32 || plain int8) over ``prompt``'s positions, with the .pte exporter's own torchao
    quantization in eager PyTorch (what an unsmoothed .pte computes)."""
    from exporters.executorch import _quantize

    quantized = copy.deepcopy(model)
    _quantize(quantized, "int8")
    with torch.no_grad():
        p, q = model(prompt).log_softmax(-1), quantized(prompt).log_softmax(-1)
    return float((p.exp() * (p - q)).sum(-1).mean())


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["executorch", "litert"])
def test_int8_artifact_of_a_model_with_outliers_matches_eager_only_smoothed(backend, trained_tiny, corpus,
                                                                           tmp_path, monkeypatch):
    """Planted outliers wreck plain dynamic int8; smoothing takes most of the error away. The
    .pte is compared with its quantization in eager PyTorch (one export instead of two); the
    .tflite, whose quantizer runs only inside the converter, with a plain export."""
    from exporters import export_model
    from exporters.backends import get_backend

    pytest.importorskip(get_backend(backend).probe)
    model = with_outliers(trained_tiny)
    kw = dict(spec=("XL",) * model.config.n_layers, context=64, prefill_len=16, val_stream=corpus.val,
              calibration=corpus.train)
    smoothed = export_model(model, backend, "int8", tmp_path / "smoothed", **kw).meta
    # a .pte stores the head apart from the lookup; a .tflite one tied table, its lookup rescaled
    assert smoothed["smoothing"]["head"] == ("separate" if backend == "executorch" else "tied")
    assert smoothed["parity"]["passed"], smoothed["parity"]["failures"]
    if backend == "executorch":
        plain_kl = _plain_int8_kl(model, corpus.val[:48].view(1, 48))
    else:
        with monkeypatch.context() as m:
            m.setattr(smoothing, "applies", lambda *a, **k: None)
            plain = export_model(model, backend, "int8", tmp_path / "plain", **kw).meta
        assert "smoothing" not in plain
        assert smoothed["parity"]["prefill_max_abs"] < plain["parity"]["prefill_max_abs"]
        plain_kl = plain["parity"]["kl_mean"]
    assert smoothed["parity"]["kl_mean"] < plain_kl / 4
