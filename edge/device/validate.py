"""The predictor checked end to end: random specs measured on the device against the prediction."""

from __future__ import annotations

from pathlib import Path

from edge import interrupt
from edge.device.cost_table import CostTable
from edge.device.costfit import observed
from edge.device.profiler import clamp_to_model, export_all, measure_all
from edge.device.profiles import DeviceProfile
from edge.device.transports import get_transport


def spec_jobs(model, specs: list) -> list:
    """Export jobs [(name, make_model)] for the dense submodels of ``specs`` (name = the spec)."""
    from edge.slicing import slice_model
    from edge.spec import format_spec

    return [(f"spec{i}-{format_spec(s).replace(',', '')}", lambda s=s: slice_model(model, s)) for i, s in enumerate(specs)]


def compare(table: dict, specs: list, jobs: list, measured: dict, errors: list) -> dict:
    """Predicted vs measured for every spec that ran: rows, and mean / max |% error| per metric
    (measured latency uses the statistic the table was fitted with, median or min)."""
    from edge.device.cost_table import predict
    from edge.spec import format_spec

    table = CostTable(table)
    rows, stat = [], table.statistic
    for spec, (name, _) in zip(specs, jobs):
        if name not in measured:
            continue
        meas, pred = measured[name], predict(table, spec)
        row = {"spec": format_spec(spec)}
        for key, m, p in (("decode_ms", observed(meas, "decode_ms", stat), pred["decode_ms"]),
                          ("prefill_ms", observed(meas, "prefill_ms", stat), pred["prefill_ms"]),
                          ("memory_bytes", meas["peak_rss_bytes"], pred["total_bytes"])):
            row[key] = {"predicted": p, "measured": m, "error_pct": 100.0 * (p - m) / m if m else float("nan")}
        rows.append(row)
    summary = {key: {"mean_abs_pct": sum(abs(r[key]["error_pct"]) for r in rows) / len(rows),
                     "max_abs_pct": max(abs(r[key]["error_pct"]) for r in rows)}
               for key in ("decode_ms", "prefill_ms", "memory_bytes")} if rows else {}
    return {"device": table.device, "precision": table.precision, "k": len(specs), "rows": rows,
            "summary": summary, "errors": errors}


def validate_predictor(profile: DeviceProfile, model, table: dict, *, k: int = 20, seed: int = 0, runs: int = 100,
                       warmup: int = 10, rounds: int = 5, transport=None, progress: bool = True) -> dict:
    """Measure ``k`` random specs of ``model`` end to end on the device against the prediction.

    Returns {"rows": [per spec: predicted / measured decode ms, prefill ms, peak memory and %
    errors], "summary": {metric: {"mean_abs_pct", "max_abs_pct"}}, "errors": [...]}.
    """
    import random

    from edge.device.cost_table import check_model
    from edge.spec import random_spec

    check_model(table, model.config)
    profile = clamp_to_model(profile, model.config)
    transport = transport or get_transport(profile.transport)
    transport.check()
    rng = random.Random(seed)
    specs = [random_spec(model.config, rng) for _ in range(k)]
    jobs = spec_jobs(model, specs)
    with interrupt.temp_dir("matedge-validate-") as tmp:
        found, errors = export_all(profile, jobs, Path(tmp), progress)
        measured, run_errors = measure_all(transport, profile, found, runs=runs, warmup=warmup, rounds=rounds,
                                           progress=progress)
    result = compare(table, specs, jobs, measured, errors + run_errors)
    result["seed"] = seed
    return result


def format_validation(result: dict) -> str:
    """Per-spec rows, then mean and max absolute % error per metric, then any failures."""
    from edge.texttable import format_table

    rows = [[r["spec"], r["decode_ms"]["predicted"], r["decode_ms"]["measured"], r["decode_ms"]["error_pct"],
             r["prefill_ms"]["error_pct"], r["memory_bytes"]["predicted"] / 2**20,
             r["memory_bytes"]["measured"] / 2**20, r["memory_bytes"]["error_pct"]] for r in result["rows"]]
    lines = [format_table(["spec", "decode pred ms", "decode meas ms", "decode err %", "prefill err %",
                           "mem pred MiB", "mem meas MiB", "mem err %"], rows)]
    for key, s in result["summary"].items():
        lines.append(f"{result['device']} {result['precision']} {key:<13} mean |error| {s['mean_abs_pct']:.2f}%   "
                     f"max |error| {s['max_abs_pct']:.2f}%   ({len(result['rows'])} specs)")
    lines += [f"failed: {e['name']} ({e['stage']}): {e['error']}" for e in result["errors"]]
    return "\n".join(lines)
