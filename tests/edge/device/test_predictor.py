"""Cost tables (schema, import, chart), the roofline estimate and the predictor's arithmetic."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest

from edge.checkpoint import save_model
from edge.cli import main
from edge.device.cost_table import CostTableError, check_model, load_table, predict, validate_table, write_table
from edge.device.costfit import fit_costs, monotone_lstsq
from edge.device.estimate import estimate_table
from edge.device.micro import micro_layouts
from edge.device.profiles import load_profile


@pytest.fixture
def table(tiny_config):
    return estimate_table(load_profile("iphone-15"), tiny_config)


def test_estimate_is_valid_and_marked(table, tiny_config):
    assert validate_table(table) == [] and table["estimated"] is True
    assert table["context"] == tiny_config.max_context  # capped at what the model can hold
    lay = table["layers"]
    assert lay["S"]["weight_bytes"] < lay["M"]["weight_bytes"] < lay["L"]["weight_bytes"] < lay["XL"]["weight_bytes"]


def test_prediction_is_fixed_plus_sum_of_layers(table):
    spec = ("S", "XL", "XL", "M")
    p = predict(table, spec)
    f, lay = table["fixed"], table["layers"]
    assert p["decode_ms"] == pytest.approx(f["decode_ms"] + lay["S"]["decode_ms"] + 2 * lay["XL"]["decode_ms"] + lay["M"]["decode_ms"])
    assert p["total_bytes"] == pytest.approx(p["weight_bytes"] + p["arena_bytes"] + p["runtime_bytes"])
    assert p["estimated"] is True
    assert predict(table, ("XL",) * 4)["decode_ms"] > predict(table, ("S",) * 4)["decode_ms"]
    with pytest.raises(CostTableError, match="not in the cost table"):
        predict(table, ("S", "XXL"))


def test_fit_recovers_known_costs(tiny_config):
    """The least-squares fit over 1- and N-layer micro-models separates fixed and per-layer costs."""
    truth = {"S": 1.0, "M": 2.0, "L": 4.0, "XL": 8.0}
    micro = []
    for name, layers in micro_layouts(tiny_config):
        cost = 3.0 + sum(truth[g] for g in layers)
        micro.append({"name": name, "layers": list(layers), "prefill_ms": 10 * cost, "prefill_p90_ms": 11 * cost,
                      "decode_ms": cost, "decode_p90_ms": cost, "arena_bytes": 100 * len(layers),
                      "artifact_bytes": 1000 * cost, "peak_rss_bytes": 5000 + 1100 * cost + 100 * len(layers)})
    fixed, layers, spill = fit_costs(micro, tiny_config.granularity_names)
    assert spill == {}  # additive truth: no cache-spill term survives leave-one-out
    assert fixed["decode_ms"] == pytest.approx(3.0) and layers["XL"]["decode_ms"] == pytest.approx(8.0)
    assert layers["M"]["weight_bytes"] == pytest.approx(2000) and layers["S"]["arena_bytes"] == pytest.approx(100)
    assert fixed["runtime_bytes"] == pytest.approx(5000 + 300) and layers["L"]["runtime_bytes"] == pytest.approx(400)


def test_a_deep_model_is_calibrated_on_short_models_and_fitted_without_spill(tiny_config):
    """Past DEEP_LAYERS: one-layer models plus SHORT_MODELS mixed models of SHORT_DEPTH layers (no
    full-depth export); the additive costs are still recovered, and a spill in the short models'
    data is not extrapolated to full depth."""
    from edge.device.micro import DEEP_LAYERS, SHORT_DEPTH, SHORT_MODELS, calibration_depth

    deep = dataclasses.replace(tiny_config, n_layers=30)
    assert calibration_depth(tiny_config) == tiny_config.n_layers <= DEEP_LAYERS
    layouts = micro_layouts(deep)
    depths = sorted(len(layers) for _, layers in layouts)
    assert depths == [1] * len(deep.granularity_names) + [SHORT_DEPTH] * SHORT_MODELS
    assert len({layers for _, layers in layouts}) == len(layouts)
    truth = {"S": 1.0, "M": 2.0, "L": 4.0, "XL": 8.0}
    micro = []
    for name, layers in layouts:
        mib = 0.5 + sum(truth[g] for g in layers)
        cost = 3.0 + sum(truth[g] for g in layers) + 0.5 * max(0.0, mib - 10)  # a knee inside the short models
        micro.append({"name": name, "layers": list(layers), "prefill_ms": 10 * cost, "prefill_p90_ms": 11 * cost,
                      "decode_ms": cost, "decode_p90_ms": cost, "arena_bytes": 0, "artifact_bytes": mib * 2**20,
                      "peak_rss_bytes": 2**20 + mib * 2**20})
    assert fit_costs(micro, deep.granularity_names)[2] != {}  # without the depth, a knee is fitted
    fixed, layers, spill = fit_costs(micro, deep.granularity_names, full_depth=deep.n_layers)
    assert spill == {} and layers["XL"]["decode_ms"] > layers["L"]["decode_ms"] > layers["S"]["decode_ms"] > 0
    micro = [{**m, "decode_ms": 3.0 + sum(truth[g] for g in m["layers"])} for m in micro]  # additive truth
    fixed, layers, _ = fit_costs(micro, deep.granularity_names, full_depth=deep.n_layers)
    assert fixed["decode_ms"] == pytest.approx(3.0) and layers["M"]["decode_ms"] == pytest.approx(2.0)


def _spill_micro(config, knees: list[tuple[float, float]]) -> list[dict]:
    """Micro-models whose decode cost is additive plus, per (knee MiB, slope), ``slope`` ms per
    MiB of weights past the knee."""
    truth = {"S": 1.0, "M": 2.0, "L": 3.0, "XL": 5.0}
    micro = []
    for name, layers in micro_layouts(config):
        mib = 0.5 + sum(truth[g] for g in layers)  # weights grow with the same widths
        cost = 3.0 + sum(truth[g] for g in layers) + sum(slope * max(0.0, mib - k) for k, slope in knees)
        micro.append({"name": name, "layers": list(layers), "prefill_ms": 10 * cost, "prefill_p90_ms": 11 * cost,
                      "decode_ms": cost, "decode_p90_ms": cost, "arena_bytes": 0, "artifact_bytes": mib * 2**20,
                      "peak_rss_bytes": 2**20 + mib * 2**20})
    return micro


def test_fit_finds_a_cache_spill_and_the_prediction_uses_it(tiny_config):
    """Weights past a cache knee cost extra per MiB: the fit finds knee and slope, and the
    predictor adds them to specs past the knee only."""
    deep = sorted(0.5 + sum({"S": 1.0, "M": 2.0, "L": 3.0, "XL": 5.0}[g] for g in layers)
                  for name, layers in micro_layouts(tiny_config) if len(layers) > 1)
    knee = deep[len(deep) // 2]  # a knee with deep micro-models on both sides
    fixed, layers, spill = fit_costs(_spill_micro(tiny_config, [(knee, 0.25)]), tiny_config.granularity_names)
    assert len(spill["decode_ms"]) == 1  # one knee in the truth: a second one does not pay
    assert spill["decode_ms"][0]["above_bytes"] == pytest.approx(knee * 2**20)
    assert spill["decode_ms"][0]["ms_per_mib"] == pytest.approx(0.25)
    assert layers["XL"]["decode_ms"] == pytest.approx(5.0) and fixed["decode_ms"] == pytest.approx(3.0)
    table = estimate_table(load_profile("iphone-15"), tiny_config)
    table.update(fixed=fixed, layers=layers, spill=spill)
    assert validate_table(table) == []
    small, big = ("S",) * tiny_config.n_layers, ("XL",) * tiny_config.n_layers
    assert predict(table, small)["decode_ms"] == pytest.approx(3.0 + tiny_config.n_layers * 1.0)  # under the knee
    big_mib = 0.5 + 5.0 * tiny_config.n_layers
    assert predict(table, big)["decode_ms"] == pytest.approx(3.0 + 5.0 * tiny_config.n_layers + 0.25 * (big_mib - knee))


def test_fit_follows_a_second_knee(tiny_config):
    """A cost that steepens twice (L2, then L3) is fitted with two knees and their slopes."""
    deep = sorted(0.5 + sum({"S": 1.0, "M": 2.0, "L": 3.0, "XL": 5.0}[g] for g in layers)
                  for name, layers in micro_layouts(tiny_config) if len(layers) > 1)
    k1, k2 = deep[2], deep[len(deep) - 5]
    _, _, spill = fit_costs(_spill_micro(tiny_config, [(k1, 0.1), (k2, 0.4)]), tiny_config.granularity_names)
    got = [(t["above_bytes"] / 2**20, t["ms_per_mib"]) for t in spill["decode_ms"]]
    assert got == [(pytest.approx(k1), pytest.approx(0.1)), (pytest.approx(k2), pytest.approx(0.4))]


def test_layer_costs_never_decrease_with_width():
    """Noise that puts M below S is pooled: the two share one cost, the rest of the fit stays exact."""
    import numpy as np

    counts = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [2, 1, 1, 2], [1, 2, 2, 1], [3, 1, 0, 2]]
    X = np.array([[1.0, *c] for c in counts])
    truth = np.array([1.0, 2.0, 2.0, 3.0, 5.0])
    y = X @ truth
    y[1] -= 0.9  # the lone M model measured fast
    free = np.linalg.lstsq(X, y, rcond=None)[0]
    assert free[2] < free[1]  # what plain least squares would ship
    coef = monotone_lstsq(X, y, 4)
    assert coef[1] == pytest.approx(coef[2]) and coef[2] <= coef[3] <= coef[4]
    assert np.allclose(monotone_lstsq(X, X @ truth, 4), truth)  # consistent data: unchanged


def test_geometry_mismatch_is_refused(table, tiny_config):
    import dataclasses

    check_model(table, tiny_config)
    with pytest.raises(CostTableError, match="another model geometry"):
        check_model(table, dataclasses.replace(tiny_config, d_model=128))


def test_import_accepts_a_valid_table_and_charts_it(table, tmp_path, capsys):
    src = tmp_path / "measured_elsewhere.json"
    src.write_text(json.dumps(table))
    out = tmp_path / "store" / "t.json"
    assert main(["profile", "import", str(src), "--out", str(out)]) == 0
    assert load_table(out) == table
    png = tmp_path / "chart.png"
    assert main(["profile", "chart", "--device", "iphone-15", "--table", str(out), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("corrupt, expected", [
    (lambda t: "{not json", "not valid JSON"),
    (lambda t: {**t, "schema": "other/9"}, "schema = 'other/9'"),
    (lambda t: {**t, "layers": {**t["layers"], "S": {**t["layers"]["S"], "decode_ms": -1}}}, "layers.S.decode_ms = -1"),
    (lambda t: {k: v for k, v in t.items() if k != "fixed"}, "fixed: missing"),
    (lambda t: {**t, "layers": {g: c for g, c in t["layers"].items() if g != "XL"}}, "exactly the granularities"),
    (lambda t: {**t, "surprise": 1}, "surprise: unknown field"),
    (lambda t: [1, 2], "top level is list"),
    (lambda t: {**t, "spill": {"decode_ms": [{"above_bytes": 1e6, "ms_per_mib": -0.1}]}}, "spill.decode_ms[0].ms_per_mib = -0.1"),
    (lambda t: {**t, "spill": {"memory": [{"above_bytes": 1e6, "ms_per_mib": 0.1}]}}, "spill.memory: unknown latency key"),
    (lambda t: {**t, "spill": {"decode_ms": [{"knee": 1}]}}, "allowed: an object with exactly above_bytes, ms_per_mib"),
    (lambda t: {**t, "spill": {"decode_ms": {"above_bytes": 1, "ms_per_mib": 1}}}, "spill.decode_ms = {"),
])
def test_malformed_import_is_one_line_exit_2_nothing_written(table, tmp_path, capsys, corrupt, expected):
    bad = corrupt(copy.deepcopy(table))
    src = tmp_path / "bad.json"
    src.write_text(bad if isinstance(bad, str) else json.dumps(bad))
    out = tmp_path / "store" / "t.json"
    assert main(["profile", "import", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err
    assert not out.exists() and not (tmp_path / "store").exists()


def test_write_refuses_invalid_tables(table, tmp_path):
    bad = copy.deepcopy(table)
    bad["threads"] = 0
    with pytest.raises(CostTableError, match="threads = 0"):
        write_table(bad, tmp_path / "t.json")
    assert not (tmp_path / "t.json").exists()


def test_predict_and_profile_cli_for_an_unreachable_device(tiny_model, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    save_model(tiny_model, ckpt)
    out = tmp_path / "iphone.json"
    assert main(["profile", "--device", "iphone-15", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    assert "estimated" in capsys.readouterr().out and load_table(out)["estimated"]
    assert main(["predict", str(ckpt), "--device", "iphone-15", "--spec", "S,M,L,XL", "--table", str(out)]) == 0
    text = capsys.readouterr().out
    assert "[estimated]" in text and "fits" in text
    assert main(["predict", str(ckpt), "--device", "iphone-15", "--spec", "S,M"]) == 2  # 2 layers, model has 4
    assert main(["predict", str(ckpt), "--device", "host", "--spec", "XL", "--table", str(tmp_path / "none.json")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["profile", "--device", "host", "--precision", "int3", "--checkpoint", str(ckpt)]) == 2
    assert "allowed for executorch" in capsys.readouterr().err


def test_predict_checks_the_relative_decode_limit_the_build_uses(tiny_model, tmp_path, capsys, write_profile):
    """decode_vs_largest = 0.5: XL itself is over the limit `matedge predict` shows, as in a build."""
    ckpt = tmp_path / "ckpt"
    save_model(tiny_model, ckpt)
    path = write_profile(tmp_path, "board", decode_ms=100.0)
    path.write_text(path.read_text().replace("prompt_tokens = 16", "prompt_tokens = 16\ndecode_vs_largest = 0.5"))
    out = tmp_path / "board.json"
    assert main(["profile", "--device", str(path), "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["predict", str(ckpt), "--device", str(path), "--spec", "XL", "--table", str(out)]) == 0
    text = capsys.readouterr().out
    decode = next(line for line in text.splitlines() if line.strip().startswith("decode ") and "limit " in line and "(p90" in line)
    assert "OVER" in decode and "0.5 of XL's predicted" in text


def test_estimate_stores_a_tied_table_as_its_backend_does(tiny_config):
    """A .pte holds the tied table twice (the lookup's copy and XNNPACK's head); a token reads it once."""
    V, d = tiny_config.vocab_size, tiny_config.d_model
    pte = estimate_table(load_profile("host"), tiny_config)  # executorch fp32
    assert pte["fixed"]["weight_bytes"] == pytest.approx((2 * V * d + d) * 4.0)
    mlp = estimate_table(load_profile("iphone-15"), tiny_config)  # coreml: one copy
    wbytes = {"fp16": 2.0, "int8": 1.0, "pal4": 0.5}[load_profile("iphone-15").precision]
    assert mlp["fixed"]["weight_bytes"] == pytest.approx((V * d + d) * wbytes)
    hw = load_profile("host").hardware  # decode streams one copy: bytes or FLOPs of V*d + d weights
    once = max((V * d + d) * 4.0 / (hw.memory_bandwidth_gbs * 1e9), 2 * (V * d + d) / (hw.gemm_gflops * 1e9))
    assert pte["fixed"]["decode_ms"] == pytest.approx(once * 1e3)
