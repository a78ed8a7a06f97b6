"""matedge convert (dense -> MatFormer) and the nested distillation fine-tune (train --init --distill)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from edge.checkpoint import load_meta, load_model, save_model
from edge.cli import main
from edge.config import MatFormerConfig
from edge.convert import convert, parse_fractions
from edge.distill import DistillArgs, distill
from edge.kl import kl_to_teacher, teacher_targets
from edge.errors import MatEdgeError
from edge.model import MatFormerLM

DENSE = dict(d_model=64, n_layers=3, n_heads=4, n_kv_heads=2, d_ff=128, max_context=64,
             granularity_fractions=(1.0,), granularity_names=("XL",))


def _dense(seed: int = 0) -> MatFormerLM:
    torch.manual_seed(seed)
    model = MatFormerLM(MatFormerConfig(**DENSE)).eval()
    with torch.no_grad():  # one unit per layer with a tiny activation but a huge output weight,
        for blk in model.layers:  # placed last: any importance order must move it to the front
            blk.ffn.w_down.weight[:, -1] *= 50.0
    return model


def test_convert_keeps_xl_exact_and_orders_units(corpus):
    dense = _dense()
    elastic, info = convert(dense, corpus.train, seq_len=64, calib_tokens=1024)
    assert elastic.config.granularity_names == ("S", "M", "L", "XL") and elastic.config.widths["S"] == 16
    x = corpus.val[:96].view(2, 48)
    with torch.no_grad():
        torch.testing.assert_close(elastic(x, ("XL",) * 3), dense(x), atol=1e-5, rtol=1e-5)
        for blk_d, blk_e in zip(dense.layers, elastic.layers):  # the planted unit is now unit 0
            torch.testing.assert_close(blk_e.ffn.w_down.weight[:, 0], blk_d.ffn.w_down.weight[:, -1])
        # importance ordering beats the stored order at S (first 16 units as stored): S's logits
        # are closer to the dense model's
        stored = MatFormerLM(elastic.config).eval()
        stored.load_state_dict(dense.state_dict())
        ref = dense(x)
        ordered_err = (elastic(x, ("S",) * 3) - ref).pow(2).mean()
        stored_err = (stored(x, ("S",) * 3) - ref).pow(2).mean()
    assert ordered_err < 0.5 * stored_err
    assert info["calibration_tokens"] == 1024


def test_fractions_are_configurable():
    assert parse_fractions("1/4,1/2,1", "A,B,XL") == ((0.25, 0.5, 1.0), ("A", "B", "XL"))
    assert parse_fractions("0.125,0.25,0.5,1", None)[1] == ("S", "M", "L", "XL")
    for text, names in (("1/2,1/4,1", "A,B,C"), ("1/4,1/2", "A,B"), ("x", None), ("1/4,1", None), ("1/4,1", "A,A")):
        with pytest.raises(MatEdgeError):
            parse_fractions(text, names)


def test_convert_cli_and_distill_resume(tmp_path, capsys):
    save_model(_dense(), tmp_path / "dense")
    assert main(["convert", str(tmp_path / "dense"), "--out", str(tmp_path / "el"), "--fractions", "1/4,1/2,1",
                 "--names", "S,M,XL", "--seq-len", "64", "--calib-tokens", "1024", "--eval-tokens", "512"]) == 0
    out = capsys.readouterr().out
    assert "perplexity" in out and load_meta(tmp_path / "el")["convert"]["ordering"] == "energy"
    el = load_model(tmp_path / "el")
    assert el.config.widths == {"S": 32, "M": 64, "XL": 128}

    common = ["train", "--init", str(tmp_path / "el"), "--distill", "--seq-len", "32", "--batch-size", "2",
              "--quiet", "--eval-every", "100", "--no-compile"]  # compiled: tests/edge/test_compiled.py
    assert main(common + ["--out", str(tmp_path / "a"), "--steps", "4"]) == 0
    assert main(common + ["--out", str(tmp_path / "b"), "--steps", "2"]) == 0
    assert main(common + ["--out", str(tmp_path / "b"), "--steps", "4"]) == 0  # resumes at step 2
    a, b = load_model(tmp_path / "a"), load_model(tmp_path / "b")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, msg=k)
    assert load_meta(tmp_path / "b")["step"] == 4 and a.config.granularity_names == ("S", "M", "XL")
    assert not torch.equal(a.layers[0].ffn.w_gate.weight, el.layers[0].ffn.w_gate.weight)  # it trained
    torch.testing.assert_close(a.tok_emb.weight, el.tok_emb.weight)  # the embedding is frozen by default


def test_distillation_brings_small_granularities_towards_the_teacher(tmp_path, corpus, trained_tiny):
    """Teacher: a trained model (peaked distributions) whose FFN units are shuffled, so its S
    prefix starts poor; 30 nested distillation steps must pull S towards the teacher."""
    from edge.convert import make_elastic

    teacher = MatFormerLM(dataclasses.replace(trained_tiny.config, granularity_fractions=(1.0,),
                                              granularity_names=("XL",))).eval()
    teacher.load_state_dict(trained_tiny.state_dict())
    gen = torch.Generator().manual_seed(0)
    orders = [torch.randperm(teacher.config.d_ff, generator=gen) for _ in teacher.layers]
    elastic = make_elastic(teacher, orders, (1 / 8, 1 / 4, 1 / 2, 1.0), ("S", "M", "L", "XL"))
    save_model(elastic, tmp_path / "el")
    x = corpus.val[:128].view(2, 64)
    L = teacher.config.n_layers

    def kl(model, g):
        with torch.no_grad():
            return kl_to_teacher(model(x, (g,) * L), teacher_targets(teacher(x))).item()

    before = kl(elastic, "S")
    distill(DistillArgs(init=str(tmp_path / "el"), out=str(tmp_path / "d"), steps=30, batch_size=4, seq_len=64,
                        lr=3e-3, eval_every=1000, progress=False))
    tuned = load_model(tmp_path / "d")
    assert before > 0.05 and kl(tuned, "S") < 0.7 * before
    assert kl(tuned, "XL") < 0.05  # XL stays close to the teacher (it is distilled too)


def test_probs_weigh_the_sum_and_steer_the_draw(tmp_path):
    """--probs: loss weights in regime sum, draw probabilities in regime sample. A granularity
    with weight 0 gives no gradient, so FFN units only it uses (XL's last half) stay as they were."""
    from edge.convert import make_elastic

    dense = _dense()
    save_model(make_elastic(dense, [torch.arange(128)] * 3, (1 / 4, 1 / 2, 1.0), ("S", "M", "XL")), tmp_path / "el")
    el = load_model(tmp_path / "el")

    def moved(out: str, units: slice) -> bool:
        new = load_model(tmp_path / out).layers[1].ffn.w_up.weight[units]  # (units, d): one row per unit
        return not torch.equal(new, el.layers[1].ffn.w_up.weight[units])

    for out, regime, probs in (("eq", "sum", None), ("noxl", "sum", (1.0, 1.0, 0.0)), ("s", "sample", (1.0, 0.0, 0.0))):
        distill(DistillArgs(init=str(tmp_path / "el"), out=str(tmp_path / out), steps=2, batch_size=2, seq_len=32,
                            lr=1e-2, regime=regime, probs=probs, eval_every=0, progress=False))
    assert moved("eq", slice(64, 128)) and moved("eq", slice(0, 32))
    assert not moved("noxl", slice(64, 128)) and moved("noxl", slice(32, 64))
    assert not moved("s", slice(32, 128)) and moved("s", slice(0, 32))


def test_bad_fine_tune_arguments(tmp_path, capsys, monkeypatch):
    save_model(_dense(), tmp_path / "dense")
    assert main(["train", "--init", str(tmp_path / "dense"), "--distill", "--out", str(tmp_path / "x")]) == 2
    assert "make it elastic first" in capsys.readouterr().err
    assert main(["train", "--distill", "--out", str(tmp_path / "x")]) == 2
    assert "need --init" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "dense"), "--out", str(tmp_path / "y"), "--fractions", "1/3,1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--names" in err
    from edge.convert import make_elastic

    save_model(make_elastic(_dense(), [torch.arange(128)] * 3, (1 / 2, 1.0), ("S", "XL")), tmp_path / "el")
    monkeypatch.setattr("edge.compiled.available", lambda: False)
    assert main(["train", "--init", str(tmp_path / "el"), "--distill", "--out", str(tmp_path / "z"), "--compile"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "C++ compiler" in err and not (tmp_path / "z").exists()


def test_compile_is_the_default_only_where_it_pays_back(monkeypatch):
    """A few-step run (a smoke test) would spend minutes compiling for seconds of training."""
    from edge import compiled

    monkeypatch.setattr("edge.compiled.available", lambda: True)
    assert not compiled.worth_it(1) and not compiled.worth_it(compiled.MIN_STEPS - 1)
    assert compiled.worth_it(compiled.MIN_STEPS) and compiled.worth_it(150)
    monkeypatch.setattr("edge.compiled.available", lambda: False)
    assert not compiled.worth_it(150)


def test_refit_brings_a_uniform_slice_closer_to_xl(corpus, trained_tiny):
    from edge.refit import refit_dense, refit_w_down
    from edge.slicing import slice_model

    L = trained_tiny.config.n_layers
    refits = refit_w_down(trained_tiny, corpus.train, "S", 64, 2048)
    assert [tuple(w.shape) for w in refits] == [(64, 32)] * L
    x = corpus.val[:128].view(2, 64)
    with torch.no_grad():
        xl = teacher_targets(trained_tiny(x))
        plain = kl_to_teacher(slice_model(trained_tiny, ("S",) * L)(x), xl)
        refit = kl_to_teacher(refit_dense(trained_tiny, "S", refits)(x), xl)
    assert refit < 0.9 * plain
