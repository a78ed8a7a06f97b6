"""Fitting a cost table: micro-model measurements -> fixed cost, per-layer costs, cache spill.

Each cost key is fitted by least squares over the micro-models (rows: one micro-model; columns:
the fixed part and the number of layers of each granularity). Latency keys get two refinements
measured to matter on the host: per-layer costs that never decrease with width, and up to two
cache-spill terms chosen by leave-one-out error (see ``edge.device.cost_table`` for how they are applied).
"""

from __future__ import annotations

from edge.errors import MatEdgeError
from edge.device.cost_table import COST_KEYS, LATENCY_KEYS


class FitError(MatEdgeError):
    """Too few micro-models were measured to separate the costs."""


STATISTICS = ("median", "min")


def fit_costs(micro: list[dict], names: tuple[str, ...], statistic: str = "median",
              full_depth: int | None = None) -> tuple[dict, dict, dict]:
    """Least squares: cost = fixed + sum of layer costs, for every key; -> (fixed, {g: costs}, spill).

    ``statistic`` picks what ``prefill_ms`` / ``decode_ms`` mean: the median of the timed runs,
    or their minimum (the uncontended cost: on a machine shared with other work the median
    carries the neighbours' load, measured here as ~9% run-to-run spread against ~3% for min).
    Latency keys may also get cache-spill terms (see ``fit_latency``); ``spill`` holds those,
    only when the deepest micro-models have the model's ``full_depth`` (when given): a spill
    fitted on shorter models would be extrapolated far past what was measured.
    """
    import numpy as np

    X = np.array([[1.0] + [m["layers"].count(g) for g in names] for m in micro])
    if np.linalg.matrix_rank(X) < len(names) + 1:
        raise FitError(f"too few micro-models succeeded to separate fixed and per-layer costs "
                       f"({len(micro)} measured; see the errors above)")
    weights = np.array([m["artifact_bytes"] for m in micro], dtype=float)
    knees = spill_knees(micro, full_depth=full_depth)
    fixed, layers, spill = {}, {g: {} for g in names}, {}
    for key in COST_KEYS:
        y = np.array([observed(m, key, statistic) for m in micro], dtype=float)
        if key in LATENCY_KEYS:
            coef, terms = fit_latency(X, y, weights, knees)
            if terms:
                spill[key] = terms
        else:
            coef = np.linalg.lstsq(X, y, rcond=None)[0]
        fixed[key] = max(0.0, float(coef[0]))  # tables hold non-negative costs (edge.device.cost_table.validate_table)
        for g, c in zip(names, coef[1:]):
            layers[g][key] = max(0.0, float(c))  # a cost is never negative; noise can push a tiny one below 0
    return fixed, layers, spill


def spill_knees(micro: list[dict], above: int = 3, full_depth: int | None = None) -> list[float]:
    """Candidate knees: weight sizes of the full-depth micro-models with ``above`` or more of them
    larger. Not the one-layer models: a knee between them and the deep ones would only say that
    deep models cost more per layer, and the slope needs several models past the knee. None when
    the deepest micro-models are shorter than the model's ``full_depth`` (when given)."""
    depth = max(len(m["layers"]) for m in micro)
    if full_depth is not None and depth != full_depth:
        return []
    deep = sorted(float(m["artifact_bytes"]) for m in micro if len(m["layers"]) == depth and depth > 1)
    return sorted({w for w in deep if sum(v > w for v in deep) >= above})


MAX_KNEES = 2  # piecewise-linear spill: enough to follow a smooth rise through L2 and L3


def fit_latency(X, y, weights, knees, max_knees: int = MAX_KNEES) -> tuple:
    """Fit one latency key: additive, plus up to ``max_knees`` spill terms
    ``ms_per_mib * max(0, weights - above)`` (a convex, piecewise-linear cost of working set).

    X: [n, 1 + granularities] layer counts, y: [n] ms, weights: [n] artifact bytes, knees: the
    ``above`` values to try. Every combination of up to ``max_knees`` knees is fitted; the model
    kept is the one with the smallest leave-one-out relative error, so knees that only fit noise
    lose to simpler models. On the host (fp32) one knee took mean decode error from 3.0% to 2.5%
    (40 random draws of 12 calibration models); a second took one bench run from 3.1% to 2.2%.
    -> (coefficients of the additive part, [{"above_bytes", "ms_per_mib"}, ...], maybe empty).
    """
    import itertools

    import numpy as np

    G = X.shape[1] - 1
    best = (_loo_error(X, y, G), monotone_lstsq(X, y, G), [])
    for n in range(1, max_knees + 1):
        for combo in itertools.combinations(knees, n):
            Xh = np.column_stack([X] + [np.maximum(0.0, weights - k) / 2**20 for k in combo])
            coef = monotone_lstsq(Xh, y, G)
            if (coef[G + 1:] <= 0).any():  # each knee adds cost: spilling never makes a model faster
                continue
            err = _loo_error(Xh, y, G)
            if err < best[0] - 1e-12:  # a real improvement, not a rounding tie with exact data
                terms = [{"above_bytes": float(k), "ms_per_mib": float(c)} for k, c in zip(combo, coef[G + 1:])]
                best = (err, coef[:G + 1], terms)
    return best[1], best[2]


def monotone_lstsq(X, y, n_widths: int):
    """Least squares whose per-layer costs (columns 1..n_widths of X, in width order S..XL) never
    decrease with width: where noise puts a wider layer below a narrower one, the two share one
    cost (their columns summed) and the fit is redone, as pool-adjacent-violators does.
    X: [n, k] with column 0 the fixed part; -> [k] coefficients. Why: on the host, one draw of
    12 calibration models put M below S and then mispredicted M-heavy specs by up to 14%."""
    import numpy as np

    blocks = [[j] for j in range(1, 1 + n_widths)]  # runs of width columns that share one cost
    rest = list(range(1 + n_widths, X.shape[1]))  # extra terms (the spill), unconstrained
    while True:
        A = np.column_stack([X[:, 0]] + [X[:, b].sum(axis=1) for b in blocks] + [X[:, j] for j in rest])
        c = np.linalg.lstsq(A, y, rcond=None)[0]
        costs = c[1:1 + len(blocks)]
        bad = next((i for i in range(len(blocks) - 1) if costs[i] > costs[i + 1]), None)
        if bad is None:
            break
        blocks[bad:bad + 2] = [blocks[bad] + blocks[bad + 1]]
    out = np.empty(X.shape[1])
    out[0], out[rest] = c[0], c[1 + len(blocks):]
    for b, v in zip(blocks, costs):
        out[b] = v
    return out


def _loo_error(X, y, n_widths: int) -> float:
    """Mean squared relative error of each micro-model predicted from a fit to all the others
    (inf when some fit without one of them cannot separate the costs)."""
    import numpy as np

    errs = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        if np.linalg.matrix_rank(X[keep]) < X.shape[1]:
            return float("inf")
        coef = monotone_lstsq(X[keep], y[keep], n_widths)
        errs.append(((X[i] @ coef - y[i]) / y[i]) ** 2)
    return float(np.mean(errs))


def observed(m: dict, key: str, statistic: str = "median") -> float:
    """The value of cost ``key`` in one runner measurement, latency read with ``statistic``."""
    if statistic == "min" and key in ("prefill_ms", "decode_ms"):
        return m[key.replace("_ms", "_min_ms")]
    if key == "weight_bytes":
        return m["artifact_bytes"]
    if key == "runtime_bytes":  # the part of peak RSS that is neither weights nor planned arena
        return m["peak_rss_bytes"] - m["artifact_bytes"] - m["arena_bytes"]
    return m[key]
