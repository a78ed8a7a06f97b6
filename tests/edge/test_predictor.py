"""Cost tables (schema, import, chart), the roofline estimate and the predictor's arithmetic."""

from __future__ import annotations

import copy
import json

import pytest

from edge.checkpoint import save_model
from edge.cli import main
from edge.predictor import CostTableError, check_model, load_table, predict, validate_table, write_table
from edge.profiler import estimate_table, fit_costs, micro_layouts
from edge.profiles import load_profile


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
    fixed, layers = fit_costs(micro, tiny_config.granularity_names)
    assert fixed["decode_ms"] == pytest.approx(3.0) and layers["XL"]["decode_ms"] == pytest.approx(8.0)
    assert layers["M"]["weight_bytes"] == pytest.approx(2000) and layers["S"]["arena_bytes"] == pytest.approx(100)
    assert fixed["runtime_bytes"] == pytest.approx(5000 + 300) and layers["L"]["runtime_bytes"] == pytest.approx(400)


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
