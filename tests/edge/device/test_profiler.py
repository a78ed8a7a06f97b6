"""The profiler end to end on this machine: micro-models exported with `exporters`, run by the
native runner, fitted into a cost table that predicts a spec it never saw."""

from __future__ import annotations

import math
import socket

import pytest

from edge.checkpoint import save_model
from edge.cli import main
from edge.config import MatFormerConfig
from edge.device.cost_table import validate_table
from edge.device.profiles import load_profile

UNREACHABLE = """\
name = "{name}"
description = "a board that is switched off"
backend = "executorch"
precision = "fp32"
threads = 1
context = 32
transport = "ssh://nobody@127.0.0.1:{port}"
[limits]
memory_mb = 100
decode_ms_per_token = 5
first_token_ms = 50
prompt_tokens = 8
[hardware]
gemm_gflops = 10
memory_bandwidth_gbs = 4
"""


def test_unreachable_device_fails_fast_with_one_line(tmp_path, tiny_model, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    prof = tmp_path / "off.toml"
    prof.write_text(UNREACHABLE.format(name="off", port=port))
    ckpt = tmp_path / "ckpt"
    save_model(tiny_model, ckpt)
    out = tmp_path / "table.json"
    assert main(["profile", "--device", str(prof), "--checkpoint", str(ckpt), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unreachable" in err and not out.exists()


@pytest.mark.slow
@pytest.mark.integration
def test_micro_models_fit_a_table_that_predicts_a_new_spec(tmp_path):
    pytest.importorskip("executorch")
    from edge.device.micro import micro_jobs
    from edge.device.profiler import clamp_to_model, export_all, measure_all, table_from
    from edge.device.validate import compare, spec_jobs
    from edge.model import MatFormerLM
    from edge.device.transports import LocalTransport

    # Two granularities, two layers: 2 one-layer models, the widest model and 2 calibration mixes.
    # A vocabulary that is not the byte tokenizer's: the micro-models export with a stand-in one.
    config = MatFormerConfig(vocab_size=512, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128, max_context=32,
                             granularity_fractions=(0.5, 1.0), granularity_names=("S", "XL"))
    profile = clamp_to_model(load_profile("host"), config)
    assert profile.context == 32 and profile.limits.prompt_tokens == 16
    spec = ("XL", "S")
    model = MatFormerLM(config).eval()
    jobs = micro_jobs(config, calibration=2) + spec_jobs(model, [spec])
    found, errors = export_all(profile, jobs, tmp_path, progress=False)
    assert errors == [] and len(found) == 6
    broken = tmp_path / "broken.pte"
    broken.write_bytes(b"\0" * 64)
    found["broken"] = broken  # a runner that crashes: reported, and the others carry on
    t = LocalTransport()
    measured, run_errors = measure_all(t, profile, found, runs=20, warmup=3, rounds=1, progress=False)
    assert "broken" not in measured and len(measured) == 6
    assert run_errors[0]["name"] == "broken" and "cannot load program" in run_errors[0]["error"]
    table = table_from(profile, config, t, measured, run_errors, runs=20, warmup=3, rounds=1, calibration=2)
    assert validate_table(table) == [] and not table["estimated"] and len(table["micro"]) == 5
    assert table["provenance"]["cpu_model"] and table["provenance"]["libraries"]["executorch"]
    assert table["layers"]["XL"]["weight_bytes"] > table["layers"]["S"]["weight_bytes"] > 0
    result = compare(table, [spec], jobs[-1:], measured, run_errors)
    row = result["rows"][0]
    assert abs(row["memory_bytes"]["error_pct"]) < 10  # memory is stable even on a busy machine
    # Latency error is reported, not bounded: on a shared 2-core CI machine under two test workers
    # one round of 20 runs was 68% off (a timed assertion; the predictor's accuracy is a benchmark,
    # bench/predictor_accuracy.py)
    assert math.isfinite(row["decode_ms"]["error_pct"]) and row["decode_ms"]["measured"] > 0


@pytest.mark.slow
@pytest.mark.integration
def test_validate_predictor_measures_random_specs_end_to_end(tmp_path, tiny_model, capsys):
    """`matedge profile validate-predictor`: K random specs sliced, exported, run by the native
    runner, and compared with the table's prediction (here a roofline table of the same geometry)."""
    pytest.importorskip("executorch")
    from edge.device.cost_table import write_table
    from edge.device.estimate import estimate_table

    ckpt = tmp_path / "ckpt"
    save_model(tiny_model, ckpt)
    table = write_table(estimate_table(load_profile("host"), tiny_model.config), tmp_path / "host.json")
    assert main(["profile", "validate-predictor", str(ckpt), "--device", "host", "--table", str(table),
                 "--specs", "2", "--runs", "5", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    for key in ("decode_ms", "prefill_ms", "memory_bytes"):
        assert f"host fp32 {key}" in out and "(2 specs)" in out
    assert "failed:" not in out
