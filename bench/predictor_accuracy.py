"""How well does the cost-table predictor do? Profile the host, then measure random specs.

For each precision (ExecuTorch fp32 and int8 by default) on the ``host`` profile:
  1. export the micro-models (edge.device.micro: one layer at each granularity, the full-depth
     model at its widest, and 12 mixed-width calibration models of full depth; for a model of
     more than 12 layers, 6 mixed models of 4 layers instead) and K random Mix'n'Match specs of
     the model (sliced dense submodels), in 2 worker processes;
  2. run every artifact in its own native runner process (apps/cpp, no torch), round-robin for
     ``--rounds`` passes, micro-models and specs interleaved so both see the same machine load;
  3. fit the cost table from the micro-models only, predict every spec, and print the mean and
     max absolute % error of decode latency, prefill latency and peak memory.

    python bench/predictor_accuracy.py [CHECKPOINT] [--specs 20] [--precisions fp32,int8]

Writes the cost tables (build/cost_tables/host-<precision>.json), their charts (.png) and the
full result (build/bench/predictor_accuracy.json). Timings depend on the machine's load: the
figures printed include the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_MODEL = None  # per worker process: the loaded checkpoint


def _export_job(job):
    """Worker: build one model (micro-model or sliced spec) and export it; -> (name, path, error)."""
    global _MODEL
    from edge.checkpoint import load_model
    from edge.errors import MatEdgeError
    from edge.device.micro import micro_model
    from edge.device.profiler import clamp_to_model, export_artifact
    from edge.device.profiles import load_profile, with_precision
    from edge.slicing import slice_model

    name, kind, layers, checkpoint, device, precision, out_dir = job
    done = sorted(Path(out_dir).glob(f"{name}.*"))
    done = [p for p in done if p.suffix != ".json"]
    if done:  # --work-dir: reuse an artifact exported by an earlier run
        return name, str(done[0]), None
    try:
        if _MODEL is None:
            _MODEL = load_model(checkpoint)
        profile = clamp_to_model(with_precision(load_profile(device), precision), _MODEL.config)
        model = micro_model(_MODEL.config, layers) if kind == "micro" else slice_model(_MODEL, layers)
        return name, str(export_artifact(model, profile, Path(out_dir), name)), None
    except MatEdgeError as e:
        return name, None, str(e)


def export_parallel(jobs, workers: int):
    from tqdm import tqdm

    ctx = mp.get_context("spawn")  # a fresh interpreter per worker: no forked torch state
    with ctx.Pool(workers) as pool:
        return list(tqdm(pool.imap_unordered(_export_job, jobs), total=len(jobs), desc="export"))


def run_precision(args, model, precision: str, tmp: Path) -> dict:
    from edge.device.cost_table import table_path, write_table
    from edge.device.costfit import STATISTICS
    from edge.device.chart import plot_table
    from edge.device.micro import micro_layouts
    from edge.device.profiler import clamp_to_model, measure_all, table_from
    from edge.device.profiles import load_profile, with_precision
    from edge.device.validate import compare, format_validation
    from edge.spec import format_spec, random_spec
    from edge.device.transports import get_transport

    profile = clamp_to_model(with_precision(load_profile(args.device), precision), model.config)
    transport = get_transport(profile.transport)
    rng = random.Random(args.seed)
    specs = [random_spec(model.config, rng) for _ in range(args.specs)]
    spec_names = [f"spec{i}-{format_spec(s).replace(',', '')}" for i, s in enumerate(specs)]
    jobs = [(n, "micro", layers, args.checkpoint, args.device, precision, str(tmp)) for n, layers in micro_layouts(model.config)]
    jobs += [(n, "spec", s, args.checkpoint, args.device, precision, str(tmp)) for n, s in zip(spec_names, specs)]
    t0 = time.time()
    results = export_parallel(jobs, args.workers)
    found = {n: Path(p) for n, p, e in results if p}
    errors = [{"name": n, "stage": "export", "error": e} for n, p, e in results if e]
    # Interleave micro-models and specs in every round, in the order the jobs were listed.
    order = {j[0]: i for i, j in enumerate(jobs)}
    found = dict(sorted(found.items(), key=lambda kv: order[kv[0]]))
    t1 = time.time()
    measured, run_errors = measure_all(transport, profile, found, runs=args.runs, warmup=args.warmup, rounds=args.rounds)
    t2 = time.time()
    results = {}
    for statistic in (args.statistic, *[s for s in STATISTICS if s != args.statistic]):  # same runs, both ways
        table = table_from(profile, model.config, transport, measured, errors + run_errors, runs=args.runs,
                           warmup=args.warmup, rounds=args.rounds, statistic=statistic)
        if statistic == args.statistic:
            out = write_table(table, table_path(profile.name, precision))
            plot_table(table, out.with_suffix(".png"))
        results[statistic] = compare(table, specs, list(zip(spec_names, specs)), measured, errors + run_errors)
        print(f"\n== {profile.name} executorch {precision}, latency = {statistic} of {args.runs} runs: "
              f"{len(results[statistic]['rows'])} specs measured end to end (export {t1 - t0:.0f} s, "
              f"measure {t2 - t1:.0f} s)" + (f"; cost table {out}" if statistic == args.statistic else ""))
        print(format_validation(results[statistic]))
    return {"table": str(out), "statistic": args.statistic, **results[args.statistic], "by_statistic": results}


def main() -> int:
    from edge.config import default_checkpoint

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", nargs="?", default=str(default_checkpoint()))
    p.add_argument("--device", default="host")
    p.add_argument("--precisions", default="fp32,int8")
    p.add_argument("--specs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default="build/bench/predictor_accuracy.json")
    p.add_argument("--statistic", choices=("min", "median"), default="min",
                   help="latency statistic of the written tables (both are reported)")
    p.add_argument("--work-dir", help="keep exported artifacts here (<dir>/<precision>/) and reuse them")
    args = p.parse_args()

    from edge.checkpoint import load_model
    from edge.device.cpp_runner import ensure_cpp_runner
    from edge.device.profiler import library_versions
    from edge.device.transports import local_cpu_model

    model = load_model(args.checkpoint)
    ensure_cpp_runner()
    load_before = os.getloadavg()
    print(f"predictor accuracy on {args.device}: {args.checkpoint} ({model.config.n_layers} layers, d_model "
          f"{model.config.d_model}, d_ff {model.config.d_ff}), CPU {local_cpu_model()} x{os.cpu_count()}, "
          f"{library_versions('executorch')}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"load average before: {load_before[0]:.1f} (shared machine: timings carry its noise)")
    report = {"checkpoint": args.checkpoint, "device": args.device, "load_before": load_before, "precisions": {}}
    with tempfile.TemporaryDirectory(prefix="matedge-bench-") as tmp:
        for precision in args.precisions.split(","):
            sub = Path(args.work_dir or tmp) / precision
            sub.mkdir(parents=True, exist_ok=True)
            report["precisions"][precision] = run_precision(args, model, precision, sub)
    report["load_after"] = os.getloadavg()
    print(f"\nload average after: {report['load_after'][0]:.1f}")
    print("summary (mean |error| / max |error|):")
    for precision, r in ((f"{p} {st}", res) for p, rr in report["precisions"].items() for st, res in rr["by_statistic"].items()):
        s = r["summary"]
        print(f"  {precision:<12} decode {s['decode_ms']['mean_abs_pct']:.2f}% / {s['decode_ms']['max_abs_pct']:.2f}%   "
              f"prefill {s['prefill_ms']['mean_abs_pct']:.2f}% / {s['prefill_ms']['max_abs_pct']:.2f}%   "
              f"memory {s['memory_bytes']['mean_abs_pct']:.2f}% / {s['memory_bytes']['max_abs_pct']:.2f}%   "
              f"({len(r['rows'])} specs)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
