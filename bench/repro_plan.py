"""How long a mode of the paper reproduction will take, by arithmetic on a finished run's
measured per-step times (by default the committed results/paper_repro.json).

Each planned run (bench/repro_train.plan_jobs) is costed at the measured seconds per step of the
finished run of the same kind (the uniform MatLM's seeds averaged; summed loss at either step
count from the summed run; base-eq-g and base-drawn-g from the baseline of width g). The runs are
then laid out longest first on ``jobs`` workers, as repro_machine.run_pool runs them.
Measurement is costed as the finished run's measuring time per seed, spread over the workers.
The figures are only as good as the per-step times: timed on a loaded CPU they overstate an
idle one.
"""

from __future__ import annotations

import heapq
import json
import sys
from pathlib import Path

from repro_train import Mode, plan_jobs


def kind(name: str) -> str:
    """The cost class of a run: 'matlm-uniform', 'matlm-skewed', 'matlm-sum', 'ofa', 'base-<g>'."""
    base = name.rsplit("-s", 1)[0] if name.rsplit("-s", 1)[-1].isdigit() else name
    if base.startswith(("base-eq-", "base-drawn-")):
        return "base-" + base.rsplit("-", 1)[1]
    if base.startswith("matlm-sum"):
        return "matlm-sum"
    return "matlm-uniform" if base.startswith("matlm-uniform") else base


def per_step_seconds(raw: dict) -> dict[str, float]:
    """{kind: mean measured seconds per step} over the finished run's trainings."""
    acc: dict[str, list[float]] = {}
    for name, r in raw["runs"].items():
        acc.setdefault(kind(name), []).append(r["seconds"] / r["steps"])
    return {k: sum(v) / len(v) for k, v in acc.items()}


def estimate(mode: Mode, raw: dict, seed: int = 0, jobs: int = 2) -> dict:
    """Predicted training and measuring minutes of ``mode`` on ``jobs`` workers."""
    if raw["info"]["mode"] != mode.name:
        raise ValueError(f"per-step times are from mode {raw['info']['mode']!r}, not {mode.name!r}")
    rate = per_step_seconds(raw)
    costs = sorted((j.steps * rate[kind(j.name)] for j in plan_jobs(mode, seed)), reverse=True)
    workers = [0.0] * max(1, jobs)  # finish time of each worker; greedy longest-first
    for c in costs:
        heapq.heapreplace(workers, workers[0] + c)
    info = raw["info"]
    # A run written before seeds were counted measured one seed's worth: the losses of every model,
    # Mix'n'Match of one MatLM, consistency of four families (as a seed of today's run does).
    measure_per_seed = info["measure_s"] / info["seeds"] if "measure_s" in info else info["wall_s"] - info["train_s"]
    measure = measure_per_seed * mode.seeds / max(1, min(jobs, 2 * mode.seeds))
    return {"rates_s_per_step": rate, "runs": len(costs), "core_minutes": sum(costs) / 60,
            "train_minutes": max(workers) / 60, "measure_minutes": measure / 60,
            "total_minutes": (max(workers) + measure) / 60}


def main(mode: Mode, path: Path, jobs: int) -> int:
    """Print the estimate (``paper_repro.py --plan``)."""
    try:
        raw = json.loads(path.read_text())
        raw["info"]["mode"], raw["runs"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        print(f"--plan: {path} is not a paper_repro.json (expected its 'info' and 'runs')", file=sys.stderr)
        return 2
    if raw["info"]["mode"] != mode.name:
        print(f"--plan: {path} is a {raw['info']['mode']!r} run; its per-step times size only that mode "
              f"(pass its flag, or a {mode.name!r} run's paper_repro.json)", file=sys.stderr)
        return 2
    e = estimate(mode, raw, jobs=jobs)
    print(f"mode {mode.name}: {e['runs']} training runs, {e['core_minutes']:.0f} core-minutes at the per-step "
          f"times of {path} ({raw['info']['date']}):")
    for k, v in sorted(e["rates_s_per_step"].items()):
        print(f"  {k:14s} {v:.3f} s/step")
    print(f"on {jobs} worker(s): training {e['train_minutes']:.0f} min + measuring {e['measure_minutes']:.0f} min "
          f"= {e['total_minutes']:.0f} min (budget: {mode.budget})")
    load = raw["info"].get("load", {}).get("mean")
    print("  (per-step times measured " + (f"at a mean 1-minute load of {load:.1f}" if load is not None else
                                           "under the load its report states") + "; a busier CPU overstates an idle one)")
    return 0
