"""Decision rules of the paper reproduction: every claim -> holds / does not hold / inconclusive.

The rules are fixed here, before any number is seen, and applied mechanically:

- Every variant is trained with several seeds; seed s of every variant sees the same data
  stream, so a difference A - B is taken per seed (paired) and summarised by its mean and a 95%
  interval: ``noise = t(0.975, n-1) * sd(differences) / sqrt(n)`` (Student's t), but at least a
  floor (``LOSS_FLOOR`` nats, ``AGREE_FLOOR`` agreement points) below which no difference counts.
- A side trained with one seed only (the summed-loss run at equal steps in default mode) is
  compared unpaired with the other side's mean, taking its unknown seed spread to be the uniform
  MatLM's at that granularity: ``noise = t(0.975, n_ref-1) * sqrt(sd_a^2/n_a + sd_b^2/n_b)``.
- With no seed spread at all (one seed everywhere) nothing is beyond noise: inconclusive.
- Speed noise of a ratio = the sum of both set-ups' relative timing spread (half-range / median
  over interleaved repeats), at least ``SPEED_FLOOR``.
- "A beats B" claims: *holds* if every difference favours the claim by more than its noise;
  *does not hold* if none does and at least one goes against it by more than its noise;
  otherwise *inconclusive* (all within noise, or mixed).
- "A is not worse than B" claims: *holds* if no difference goes against the claim by more than
  its noise, else *does not hold*.
- Claim 4 (sampling vs summed loss) is judged at equal training FLOPs (the summed run gets ~1/G
  of the steps); the same comparison at equal steps is reported as claim 4s.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
from scipy import stats

LOSS_FLOOR = 0.005  # nats per token
AGREE_FLOOR = 0.5  # percentage points
SPEED_FLOOR = 0.02  # relative
HOLDS, FAILS, UNSURE = "holds", "does not hold", "inconclusive"


def _sd(xs: list[float]) -> float | None:
    return statistics.stdev(xs) if len(xs) >= 2 else None


def _t(df: int) -> float:
    return float(stats.t.ppf(0.975, df))


def interval(ds: list[float], floor: float) -> dict:
    """Mean of per-seed differences and its 95% half-width (None with one seed)."""
    sd = _sd(ds)
    noise = None if sd is None else max(floor, _t(len(ds) - 1) * sd / math.sqrt(len(ds)))
    return {"mean": statistics.fmean(ds), "noise": noise, "n": len(ds), "paired": True}


def compare(a: list[float], b: list[float], floor: float, ref: list[float] | None = None) -> dict:
    """a - b over seeds: paired when both have the same number (>= 2) of seeds, else unpaired
    with a one-seed side's spread taken from ``ref`` (the uniform MatLM's values)."""
    if len(a) == len(b) >= 2:
        return interval([x - y for x, y in zip(a, b)], floor)
    ref_sd = _sd(ref or [])
    sa, sb = _sd(a) or ref_sd, _sd(b) or ref_sd
    mean = statistics.fmean(a) - statistics.fmean(b)
    if sa is None or sb is None:
        return {"mean": mean, "noise": None, "n": min(len(a), len(b)), "paired": False}
    df = (len(ref) if ref and len(ref) >= 2 else max(len(a), len(b))) - 1
    noise = max(floor, _t(df) * math.sqrt(sa ** 2 / len(a) + sb ** 2 / len(b)))
    return {"mean": mean, "noise": noise, "n": min(len(a), len(b)), "paired": False}


def beats(diffs: list[float], noise) -> str:
    """diffs > 0 favour the claim; ``noise`` one number or one per difference (None: unknown)."""
    ns = noise if isinstance(noise, (list, tuple)) else [noise] * len(diffs)
    if any(n is None for n in ns):
        return UNSURE
    if all(d > n for d, n in zip(diffs, ns)):
        return HOLDS
    if all(d <= n for d, n in zip(diffs, ns)) and any(d < -n for d, n in zip(diffs, ns)):
        return FAILS
    return UNSURE


def not_worse(diffs: list[float], noise) -> str:
    """diffs > 0 favour the claim; within noise counts as not worse."""
    ns = noise if isinstance(noise, (list, tuple)) else [noise] * len(diffs)
    if any(n is None for n in ns):
        return UNSURE
    return HOLDS if all(d >= -n for d, n in zip(diffs, ns)) else FAILS


def _claim(rule, cmps: dict[str, dict], **extra) -> dict:
    """A verdict from {granularity: compare(...)}; keeps the means and noises it rests on."""
    diffs = {g: c["mean"] for g, c in cmps.items()}
    noise = {g: c["noise"] for g, c in cmps.items()}
    return {"verdict": rule(list(diffs.values()), list(noise.values())), "diffs": diffs, "noise": noise,
            "n": min(c["n"] for c in cmps.values()), **extra}


def curve_residuals(points: list[dict], curve: list[tuple[int, float]]) -> list[float]:
    """Loss minus the S..XL curve (piecewise linear in log params) at each point's size."""
    xs = np.log([p for p, _ in curve])
    ys = np.array([l for _, l in curve])
    return [pt["loss"] - float(np.interp(math.log(pt["params"]), xs, ys)) for pt in points]


def _spd(rows: dict, label: str) -> tuple[float, float]:
    r = rows[label]
    return r["tokens_per_s"], (0.0 if math.isnan(r["spread"]) else r["spread"])


def speed_noise(rows: dict, a: str, b: str) -> float:
    return max(SPEED_FLOOR, _spd(rows, a)[1] + _spd(rows, b)[1])


def judge(losses: dict, mm: list[list[dict]], cons: dict, spec: list[dict], params: dict, ks) -> dict:
    """All verdicts with the numbers they rest on: {claim id: {...}}. ``losses[v][g]`` and
    ``cons[family][g][metric]`` are lists over seeds; ``mm`` one list of points per seed."""
    names = list(losses["matlm-uniform"])
    small, xl = names[:-1], names[-1]
    uni = losses["matlm-uniform"]
    lc = lambda v, g: compare(losses[v][g], uni[g], LOSS_FLOOR, uni[g])  # noqa: E731  (v - uniform)
    c: dict[str, dict] = {"noise": {"seeds": len(uni[xl]), "loss_sd": {g: _sd(uni[g]) for g in names},
                                    "agreement_sd": {g: _sd(cons["matlm-uniform"][g]["agreement_pct"])
                                                     for g in small}}}
    for cid, fam in (("", "baseline-eq"), ("d", "baseline-drawn")):
        c["1" + cid] = _claim(beats, {g: lc(fam, g) for g in small})
        c["2" + cid] = _claim(not_worse, {xl: lc(fam, xl)})
    sk = {g: compare(uni[g], losses["matlm-skewed"][g], LOSS_FLOOR, uni[g]) for g in names}
    c["3"] = {**_claim(beats, {xl: sk[xl]}), "diffs": {g: x["mean"] for g, x in sk.items()},
              "noise": {g: x["noise"] for g, x in sk.items()}}
    c["4"] = _claim(not_worse, {g: lc("matlm-sum-flops", g) for g in names})
    c["4s"] = _claim(not_worse, {g: lc("matlm-sum-steps", g) for g in names})
    c.update(_mixnmatch_claims(mm))
    ag = lambda fam, g: cons[fam][g]["agreement_pct"]  # noqa: E731
    for cid, fam in (("6", "baseline-eq"), ("6d", "baseline-drawn")):
        c[cid] = _claim(beats, {g: compare(ag("matlm-uniform", g), ag(fam, g), AGREE_FLOOR) for g in small})
    # The same question against one common reference, the equal-token baseline XL.
    c["6b"] = _claim(beats, {g: compare(ag("matlm-vs-baseline-XL", g), ag("baseline-eq", g), AGREE_FLOOR)
                             for g in small})
    c.update(_speed_claims({r["setup"]: r for r in spec}, ks))
    c["8"] = _ofa_claim(losses["ofa"], uni, names)
    return c


def _ofa_claim(ofa: dict, uni: dict, names) -> dict:
    """Bell shape: per seed, min(gap at S, gap at XL) - max(gap in the middle), gap = OFA - MatLM."""
    n = min(len(ofa[names[0]]), len(uni[names[0]]))
    gaps = [{g: ofa[g][i] - uni[g][i] for g in names} for i in range(n)]
    d8 = [min(gp[names[0]], gp[names[-1]]) - (max(gp[g] for g in names[1:-1]) if len(names) > 2 else 0.0)
          for gp in gaps]
    it = interval(d8, LOSS_FLOOR)
    return {"verdict": beats([it["mean"]], [it["noise"]]), "diffs": {g: statistics.fmean(gp[g] for gp in gaps)
                                                                   for g in names},
            "extremes_minus_middle": it["mean"], "noise": it["noise"], "n": n}


def _mm_seed(points: list[dict]) -> tuple[float, float, float, float, int, int]:
    # The S..XL curve from the uniform specs *in mm*: the same validation windows as every point
    # (the loss table uses more windows, and a window shift alone moves losses by a few 0.01).
    curve = sorted((p["params"], p["loss"]) for p in points if p["uniform"])
    mono = curve_residuals([p for p in points if p["monotone"] and not p["uniform"]], curve)
    other = curve_residuals([p for p in points if not p["monotone"]], curve)
    med = lambda r: statistics.median(r) if r else float("nan")  # noqa: E731
    return med(mono), med(other), max(mono, default=float("nan")), max(map(abs, mono), default=0.0), len(mono), len(other)


def _mixnmatch_claims(mm: list[list[dict]]) -> dict:
    """5: the median residual of monotone specs is not above the curve (per seed, then the
    interval over seeds); 5b: non-monotone specs' median residual exceeds the monotone one."""
    per = [_mm_seed(points) for points in mm]
    if not per or per[0][4] == 0:
        return {"5": {"verdict": UNSURE, "n": 0}, "5b": {"verdict": UNSURE, "n": 0}}
    r5 = interval([-p[0] for p in per], LOSS_FLOOR)
    out = {"5": {"verdict": not_worse([r5["mean"]], [r5["noise"]]), "median_residual": -r5["mean"],
                 "noise": r5["noise"], "max_residual": max(p[2] for p in per), "n_specs": per[0][4], "n": len(per)}}
    if per[0][5]:
        r5b = interval([p[1] - p[0] for p in per], LOSS_FLOOR)
        out["5b"] = {"verdict": beats([r5b["mean"]], [r5b["noise"]]), "diff": r5b["mean"], "noise": r5b["noise"],
                     "median_residual_monotone": statistics.fmean(p[0] for p in per),
                     "median_residual_other": statistics.fmean(p[1] for p in per), "n_other": per[0][5], "n": len(per)}
    else:
        out["5b"] = {"verdict": UNSURE, "n": 0}
    return out


def _speed_claims(rows: dict, ks) -> dict:
    """7a MatLM S->XL faster than XL alone; 7b shared cache faster than separate caches;
    7c MatLM pair's speed-up beats the baseline pair's."""
    a, b, c = [], [], []
    na, nb, nc = [], [], []
    for k in ks:
        sep, sh, bp = f"MatLM S->XL k={k}", f"MatLM S->XL k={k} shared cache", f"Baseline S->XL k={k}"
        a.append(rows[sep]["speedup"] - 1)
        na.append(speed_noise(rows, sep, "MatLM XL alone"))
        b.append(rows[sh]["tokens_per_s"] / rows[sep]["tokens_per_s"] - 1)
        nb.append(speed_noise(rows, sh, sep))
        c.append(rows[sep]["speedup"] - rows[bp]["speedup"])
        nc.append(speed_noise(rows, sep, bp) + _spd(rows, "MatLM XL alone")[1] + _spd(rows, "Baseline XL alone")[1])
    best = max(range(len(ks)), key=lambda i: a[i])  # the best k is what a user would pick
    return {"7a": {"verdict": beats([a[best]], na[best]), "best_k": ks[best], "speedup": 1 + a[best],
                   "noise": na[best]},
            "7b": {"verdict": beats([b[best]], nb[best]), "k": ks[best], "ratio": 1 + b[best], "noise": nb[best]},
            "7c": {"verdict": beats([c[best]], nc[best]), "k": ks[best], "diff": c[best], "noise": nc[best]}}
