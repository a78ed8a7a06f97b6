"""The paper reproduction's report: results/paper_repro.md and its PNG plots."""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

# The paper's figures (Devvrit et al., MatFormer). Absolute losses are not comparable with ours
# (their 256k SentencePiece vocabulary vs our byte tokens): only gaps and their signs are.
PAPER_78M = {"matlm": {"S": 3.874, "XL": 3.74}, "baseline": {"S": 4.011, "XL": 3.83}}
PAPER_850M = {"matlm": {"S": 2.970, "M": 2.934, "L": 2.886, "XL": 2.846},
              "baseline": {"S": 3.017, "M": 2.971, "L": 2.910, "XL": 2.840}}
PAPER_SPEEDUP = {"baseline pair": 1.10, "MatLM pair": 1.14, "MatLM + shared attention cache": 1.16}
LABELS = {"matlm-uniform": "MatLM, uniform sampling (v2)", "matlm-skewed": "MatLM, skewed to XL (.17/.20/.22/.41)",
          "matlm-sum-flops": "MatLM, summed loss (v1), equal FLOPs", "matlm-sum-steps": "MatLM, summed loss (v1), equal steps",
          "ofa": "OFA-style (random per-layer)", "baseline-eq": "dense baselines, equal tokens (headline)",
          "baseline-drawn": "dense baselines, tokens their granularity drew"}


def _md_table(headers, rows) -> str:
    return "\n".join(["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
                      *("| " + " | ".join(str(c) for c in r) + " |" for r in rows)])


def mean_sd(xs: list[float], nd: int = 4, unit: str = "") -> str:
    """'mean ± sd (n)' of per-seed values; one seed: the value and '(n=1)'."""
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return f"{m:.{nd}f}{unit} (n=1)"
    return f"{m:.{nd}f}{unit} ± {statistics.stdev(xs):.{nd}f} (n={len(xs)})"


def pm(mean: float, noise, nd: int = 4, unit: str = "") -> str:
    """A difference and its 95% half-width ('±?' where no seed spread was measured)."""
    return f"{mean:+.{nd}f}{unit} ± " + ("?" if noise is None else f"{noise:.{nd}f}{unit}")


def loss_table(losses: dict, names) -> str:
    rows = [[LABELS[v], *(mean_sd(losses[v][g]) for g in names)] for v in LABELS if v in losses]
    for scale, paper in (("78M", PAPER_78M), ("850M", PAPER_850M)):
        for fam in ("matlm", "baseline"):
            label = f"*paper {scale}: {'MatLM (uniform)' if fam == 'matlm' else 'baseline'}*"
            rows.append([label, *(f"{paper[fam][g]:.3f}" if g in paper[fam] else "–" for g in names)])
    return _md_table(["variant (mean ± sd over seeds)", *names], rows)


def gap_table(losses: dict, names, compare) -> str:
    """MatLM variants minus each baseline family per granularity (mean of per-seed differences ±
    95% half-width; negative = MatLM better), and the paper's gaps."""
    rows = []
    for fam in ("baseline-eq", "baseline-drawn"):
        for v in ("matlm-uniform", "matlm-skewed", "matlm-sum-flops", "matlm-sum-steps", "ofa"):
            if v in losses:
                rows.append([f"{LABELS[v]} − {fam.split('-')[1]}", *(
                    pm(**{k: c[k] for k in ("mean", "noise")}) for c in
                    (compare(losses[v][g], losses[fam][g], losses["matlm-uniform"][g]) for g in names))])
    for scale, p in (("78M", PAPER_78M), ("850M", PAPER_850M)):
        rows.append([f"*paper {scale}*", *(f"{p['matlm'][g] - p['baseline'][g]:+.3f}" if g in p["matlm"]
                                           else "–" for g in names)])
    return _md_table(["loss minus baseline (eq = equal tokens, drawn = tokens drawn)", *names], rows)


def accounting_table(runs: dict, names) -> str:
    """One row per variant: seeds, steps, tokens per granularity (mean over seeds), training
    FLOPs and measured training seconds per run (mean over seeds)."""
    order = [*LABELS, "base-eq", "base-drawn"]
    rank = lambda r: (next((i for i, v in enumerate(order) if r["variant"].startswith(v)), len(order)),  # noqa: E731
                      names.index(r["variant"].rsplit("-", 1)[1]) if r["variant"].startswith("base-") else 0, r["seed"])
    by: dict[str, list[dict]] = {}
    for r in sorted(runs.values(), key=rank):
        by.setdefault(r["variant"], []).append(r)
    rows = []
    for v, rs in by.items():
        r0 = rs[0]
        toks = ", ".join(f"{g} {statistics.fmean(r['tokens_per_granularity'][g] for r in rs):,.0f}"
                         for g in names if g in r0["tokens_per_granularity"])
        probs = f" p={'/'.join(f'{p:g}' for p in r0['probs'])}" if r0["probs"] else ""
        steps = sorted({r["steps"] for r in rs})
        rows.append([v, r0["regime"] + probs, r0["d_ff"], len(rs), "/".join(map(str, steps)) if len(steps) < 4
                     else f"{min(steps)}–{max(steps)}", toks or "every step: one random granularity per layer",
                     f"{statistics.fmean(r['flops'] for r in rs) / 1e12:.3g}",
                     f"{statistics.fmean(r['seconds'] for r in rs):.0f}"])
    return _md_table(["run", "regime", "d_ff", "seeds", "steps", "tokens seen per granularity (mean)",
                      "train TFLOPs", "train s (mean)"], rows)


def consistency_table(cons: dict, names) -> str:
    rows = []
    for fam, label in (("matlm-uniform", "MatLM sub vs MatLM XL"), ("baseline-eq", "equal-token baseline vs its XL"),
                       ("baseline-drawn", "drawn-token baseline vs its XL"),
                       ("matlm-vs-baseline-XL", "MatLM sub vs equal-token baseline XL")):
        rows.append([label, *(f"{mean_sd(cons[fam][g]['agreement_pct'], 2, '%')} / "
                              f"{statistics.fmean(cons[fam][g]['kl']):.4f}" for g in names[:-1])])
    return _md_table(["greedy agreement (mean ± sd) / mean KL(XL‖sub)", *names[:-1]], rows)


def spec_table(spec: list[dict]) -> str:
    rows = [[r["setup"], f"{r['tokens_per_s']:.1f}", "–" if r["spread"] != r["spread"] else f"±{100 * r['spread']:.1f}%",
             f"{r['speedup']:.2f}x", "–" if r["acceptance"] is None else f"{100 * r['acceptance']:.1f}%",
             "–" if r["exact"] is None else f"{100 * r['exact']:.0f}%"] for r in spec]
    return _md_table(["set-up", "tokens/s", "spread", "vs its XL alone", "draft acceptance",
                      "output == XL greedy"], rows)


def plot_losses(losses: dict, params: dict, path: Path) -> None:
    names = list(params)
    xs = [params[g] / 1e6 for g in names]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=90)
    for v, style in (("matlm-uniform", "o-"), ("matlm-skewed", "s--"), ("matlm-sum-flops", "^--"), ("ofa", "v:"),
                     ("baseline-eq", "kD-"), ("baseline-drawn", "D:")):
        ys = [statistics.fmean(losses[v][g]) for g in names]
        err = [statistics.stdev(losses[v][g]) if len(losses[v][g]) > 1 else 0.0 for g in names]
        ax.errorbar(xs, ys, yerr=err, fmt=style, capsize=2, label=LABELS[v])
    for x, g in zip(xs, names):
        ax.annotate(g, (x, statistics.fmean(losses["baseline-eq"][g])), textcoords="offset points", xytext=(4, 4),
                    fontsize=8)
    ax.set(xscale="log", xlabel="parameters (M)", ylabel="validation loss (nats / byte)", title="Loss at S/M/L/XL (mean ± sd over seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_mixnmatch(mm: list[dict], losses: dict, params: dict, path: Path) -> None:
    names = list(params)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=90)
    mono = [p for p in mm if p["monotone"] and not p["uniform"]]
    other = [p for p in mm if not p["monotone"]]
    ax.scatter([p["params"] / 1e6 for p in mono], [p["loss"] for p in mono], s=14, label="Mix'n'Match monotone")
    ax.scatter([p["params"] / 1e6 for p in other], [p["loss"] for p in other], s=18, marker="x",
               label="random non-monotone")
    uni = sorted((p["params"] / 1e6, p["loss"]) for p in mm if p["uniform"])  # same windows as the dots
    ax.plot([x for x, _ in uni], [y for _, y in uni], "o-", color="C3", label="MatLM S/M/L/XL (same windows)")
    xs = [params[g] / 1e6 for g in names]
    ax.plot(xs, [statistics.fmean(losses["baseline-eq"][g]) for g in names], "kD-",
            label="equal-token baselines, mean (loss-table windows)")
    ax.set(xscale="log", xlabel="parameters (M)", ylabel="validation loss (nats / byte)",
           title="Mix'n'Match: loss vs parameters (first seed)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_spec(spec: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=90)
    labels = [r["setup"] for r in spec]
    colors = ["C0" if lab.startswith("MatLM") else "0.5" for lab in labels]
    ax.barh(range(len(spec)), [r["tokens_per_s"] for r in spec], color=colors)
    ax.set_yticks(range(len(spec)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="tokens / s (greedy, batch 1)", title="Speculative decoding on this CPU")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
