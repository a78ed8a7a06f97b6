"""Which MatFormer paper claims hold at small scale, on this machine: a real, seeded run.

    python bench/paper_repro.py            # default mode (sized for <= 90 min on 2 idle cores)
    python bench/paper_repro.py --quick    # <= 10 min on 2 idle cores
    python bench/paper_repro.py --smoke --out /tmp/x   # seconds; what the test suite runs
    python bench/paper_repro.py --plan     # predicted duration of a mode, from a finished run

Trains, with several seeds each, the universal MatLM with uniform sampling, with sampling skewed
to XL and with summed loss (at equal FLOPs and at equal steps), an OFA-style variant, and dense
S/M/L/XL baselines given equal tokens and, as a second row, the tokens their granularity drew
(bench/repro_train.py), on ``--jobs`` single-threaded worker processes; measures losses,
Mix'n'Match, consistency and speculative decoding (bench/repro_measure.py); judges every claim by
the fixed rules of bench/repro_claims.py; writes ``paper_repro.md``, ``paper_repro.json`` and PNG
plots into ``--out`` (default ``results/``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the repro_* helpers next to this file

import torch  # noqa: E402

import repro_claims as claims  # noqa: E402
import repro_measure as measure  # noqa: E402
import repro_plan as plan  # noqa: E402
import repro_report as report  # noqa: E402
from repro_machine import LoadMonitor, cpu_model, run_pool  # noqa: E402
from repro_render import render  # noqa: E402
from repro_train import MODES, train_all, universal_config  # noqa: E402

from edge.spec import param_count, uniform_specs  # noqa: E402

CLAIMS = ("1", "1d", "2", "2d", "3", "4", "4s", "5", "5b", "6", "6d", "6b", "7a", "7b", "7c", "8")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the <= 10 minute mode (tiny model)")
    size.add_argument("--smoke", action="store_true", help="a seconds-long run for the test suite")
    p.add_argument("--seed", type=int, default=0, help="first training seed (the mode's seeds are seed, seed+1, ...)")
    p.add_argument("--out", default="results", help="folder for paper_repro.md / .json / PNGs")
    p.add_argument("--work", default=None, help="checkpoint folder (default runs/paper_repro/MODE); "
                   "finished identical runs there are reused")
    p.add_argument("--jobs", type=_positive, default=2, help="worker processes for training and measuring "
                   "(default 2: the budget is for 2 idle cores)")
    p.add_argument("--threads", type=_positive, default=1, help="torch threads per worker (default 1)")
    p.add_argument("--note", default="", help="a line added to the report")
    p.add_argument("--rerender", action="store_true", help="re-judge and re-write the report from "
                   "--out/paper_repro.json, without measuring again")
    p.add_argument("--plan", nargs="?", const="results/paper_repro.json", default=None, metavar="JSON",
                   help="print the mode's predicted duration from the per-step times of a finished run "
                   "(default results/paper_repro.json) and exit")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    mode = MODES["quick" if a.quick else "smoke" if a.smoke else "default"]
    out, work = Path(a.out), Path(a.work or f"runs/paper_repro/{mode.name}")
    if a.plan:
        if not Path(a.plan).is_file():
            print(f"--plan: no finished run at {a.plan} (pass a paper_repro.json)", file=sys.stderr)
            return 2
        return plan.main(mode, Path(a.plan), a.jobs)
    out.mkdir(parents=True, exist_ok=True)
    if a.rerender:
        return rerender(mode, out, a.note)
    t0 = time.perf_counter()
    log = lambda msg: print(f"[{time.perf_counter() - t0:7.1f}s] {msg}", flush=True)  # noqa: E731
    log(f"mode {mode.name} ({mode.budget}), seeds {a.seed}..{a.seed + mode.seeds - 1}, "
        f"{a.jobs} worker(s) x {a.threads} thread(s)")
    with LoadMonitor() as load:
        runs = train_all(mode, work, a.seed, a.jobs, a.threads, log=log)
        t_train = time.perf_counter() - t0
        log("measuring: losses, consistency, Mix'n'Match")
        losses, cons, mm = measure_all(mode, work, a.seed, set(runs), a.jobs, a.threads, log)
        log("speculative decoding (alone)")
        spec = measure.spec_decoding(mode, work, a.seed)
    cfg = universal_config(mode)
    params = {g: param_count(s, cfg) for g, s in uniform_specs(cfg).items()}
    verdicts = claims.judge(losses, mm, cons, spec, params, mode.ks)
    wall = time.perf_counter() - t0
    info = {"mode": mode.name, "budget": mode.budget, "seed": a.seed, "seeds": mode.seeds,
            "sum_steps_seeds": mode.sum_steps_seeds, "wall_s": wall, "train_s": t_train, "measure_s": wall - t_train,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "note": a.note,
            "cpu_model": cpu_model(), "cpus": os.cpu_count(), "jobs": a.jobs, "threads": a.threads,
            "load": load.summary(), "torch": torch.__version__, "python": platform.python_version(),
            "config": cfg.to_dict(), "params": params}
    raw = {"info": info, "losses": losses, "mixnmatch": mm, "consistency": cons, "spec_decoding": spec,
           "verdicts": verdicts, "runs": runs}
    write_outputs(out, raw, mode)
    log(f"wrote {out / 'paper_repro.md'} (wall {wall / 60:.1f} min)")
    return 0


def measure_all(mode, work: Path, seed: int, have: set[str], jobs: int, threads: int, log):
    """Losses and consistency ({v: {g: [per seed]}}) and Mix'n'Match points (one list per seed),
    every seed's two tasks spread over the workers."""
    seeds = list(range(seed, seed + mode.seeds))
    tasks = [(measure.mixnmatch, mode, work, s, seed) for s in seeds]
    tasks += [(measure.seed_measures, mode, work, s, have) for s in seeds]
    done = run_pool(measure.call, tasks, jobs, threads, log=log,
                    label=lambda t: f"{t[0].__name__} seed {t[3]}")
    losses, cons = measure.gather(done[len(seeds):])
    return losses, cons, done[:len(seeds)]


def write_outputs(out: Path, raw: dict, mode) -> None:
    """paper_repro.json, the three plots and paper_repro.md (each written whole, then renamed)."""
    losses, params = raw["losses"], raw["info"]["params"]
    _write(out / "paper_repro.json", lambda p: p.write_text(json.dumps(raw, indent=1, default=str) + "\n"))
    _write(out / "paper_repro_losses.png", lambda p: report.plot_losses(losses, params, p))
    _write(out / "paper_repro_mixnmatch.png", lambda p: report.plot_mixnmatch(raw["mixnmatch"][0], losses, params, p))
    _write(out / "paper_repro_specdec.png", lambda p: report.plot_spec(raw["spec_decoding"], p))
    md = render(raw["info"], raw["runs"], losses, raw["mixnmatch"], raw["consistency"], raw["spec_decoding"],
                raw["verdicts"], mode)
    _write(out / "paper_repro.md", lambda p: p.write_text(md))
    for cid in CLAIMS:
        print(f"  claim {cid}: {raw['verdicts'][cid]['verdict']}")


def _write(path: Path, fn) -> None:
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)  # keep the suffix: matplotlib picks the format by it
    fn(tmp)
    os.replace(tmp, path)


def rerender(mode, out: Path, note: str = "") -> int:
    """Re-apply the rules of repro_claims to a finished run's measurements and rewrite the report
    (``note``, if given, replaces the run's note). Measurements are never changed here."""
    raw = json.loads((out / "paper_repro.json").read_text())
    if "measure_s" not in raw["info"]:
        print(f"{out / 'paper_repro.json'} was written by an earlier version (one seed per variant); "
              "re-run the benchmark to get a report with seeds", file=sys.stderr)
        return 2
    if raw["info"]["mode"] != mode.name:
        print(f"{out / 'paper_repro.json'} is from mode {raw['info']['mode']!r}; pass that mode's flag", file=sys.stderr)
        return 2
    if note:
        raw["info"]["note"] = note
    raw["info"]["rerendered"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    raw["verdicts"] = claims.judge(raw["losses"], raw["mixnmatch"], raw["consistency"], raw["spec_decoding"],
                                   raw["info"]["params"], mode.ks)
    write_outputs(out, raw, mode)
    return 0


if __name__ == "__main__":
    sys.exit(main())
