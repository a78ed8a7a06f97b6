"""The paper reproduction's report: results/paper_repro.md and its PNG plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from edge.texttable import format_table  # noqa: E402

# The paper's figures (Devvrit et al., MatFormer). Absolute losses are not comparable with ours
# (their 256k SentencePiece vocabulary vs our byte tokens): only gaps and their signs are.
PAPER_78M = {"matlm": {"S": 3.874, "XL": 3.74}, "baseline": {"S": 4.011, "XL": 3.83}}
PAPER_850M = {"matlm": {"S": 2.970, "M": 2.934, "L": 2.886, "XL": 2.846},
              "baseline": {"S": 3.017, "M": 2.971, "L": 2.910, "XL": 2.840}}
PAPER_SPEEDUP = {"baseline pair": 1.10, "MatLM pair": 1.14, "MatLM + shared attention cache": 1.16}
LABELS = {"matlm-uniform": "MatLM, uniform sampling (v2)", "matlm-uniform-seed2": "MatLM, uniform, seed+1",
          "matlm-skewed": "MatLM, skewed to XL (.17/.20/.22/.41)", "matlm-sum": "MatLM, summed loss (v1)",
          "ofa": "OFA-style (random per-layer)", "baseline": "dense baselines (own models)"}


def _f(x, nd=3):
    return "–" if x is None else f"{x:+.{nd}f}" if nd < 0 else f"{x:.{nd}f}"


def _md_table(headers, rows) -> str:
    return "\n".join(["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
                      *("| " + " | ".join(str(c) for c in r) + " |" for r in rows)])


def loss_table(losses: dict, names) -> str:
    rows = [[LABELS[v], *(f"{losses[v][g]:.4f}" for g in names)] for v in LABELS]
    for scale, paper in (("78M", PAPER_78M), ("850M", PAPER_850M)):
        for fam in ("matlm", "baseline"):
            label = f"*paper {scale}: {'MatLM (uniform)' if fam == 'matlm' else 'baseline'}*"
            rows.append([label, *(f"{paper[fam][g]:.3f}" if g in paper[fam] else "–" for g in names)])
    return _md_table(["variant", *names], rows)


def gap_table(losses: dict, names) -> str:
    """MatLM minus baseline per granularity, ours and the paper's (negative = MatLM better)."""
    rows = []
    for v in ("matlm-uniform", "matlm-uniform-seed2", "matlm-skewed", "matlm-sum", "ofa"):
        rows.append([LABELS[v], *(f"{losses[v][g] - losses['baseline'][g]:+.4f}" for g in names)])
    for scale, p in (("78M", PAPER_78M), ("850M", PAPER_850M)):
        rows.append([f"*paper {scale}*", *(f"{p['matlm'][g] - p['baseline'][g]:+.3f}" if g in p["matlm"]
                                           else "–" for g in names)])
    return _md_table(["loss minus baseline", *names], rows)


def accounting_table(runs: dict, names) -> str:
    rows = []
    for name, r in runs.items():
        toks = ", ".join(f"{g} {r.tokens_per_granularity[g]:,}" for g in names if g in r.tokens_per_granularity)
        rows.append([name, r.regime + (f" p={'/'.join(f'{p:g}' for p in r.probs)}" if r.probs else ""),
                     r.d_ff, r.steps, toks or "every step: one random granularity per layer", f"{r.seconds:.0f}"])
    return _md_table(["run", "regime", "d_ff", "steps", "tokens seen per granularity", "train s"], rows)


def consistency_table(cons: dict, names) -> str:
    rows = []
    for fam, label in (("matlm-uniform", "MatLM sub vs MatLM XL"), ("matlm-uniform-seed2", "MatLM (seed+1) vs its XL"),
                       ("baseline", "baseline vs baseline XL"), ("matlm-vs-baseline-XL", "MatLM sub vs baseline XL")):
        rows.append([label, *(f"{cons[fam][g]['agreement_pct']:.2f}% / {cons[fam][g]['kl']:.4f}" for g in names[:-1])])
    return _md_table(["greedy agreement / KL(XL‖sub)", *names[:-1]], rows)


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
    for v, style in (("matlm-uniform", "o-"), ("matlm-skewed", "s--"), ("matlm-sum", "^--"), ("ofa", "v:"),
                     ("baseline", "kD-")):
        ax.plot(xs, [losses[v][g] for g in names], style, label=LABELS[v])
    for x, g in zip(xs, names):
        ax.annotate(g, (x, losses["baseline"][g]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set(xscale="log", xlabel="parameters (M)", ylabel="validation loss (nats / byte)", title="Loss at S/M/L/XL")
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
    ax.plot(xs, [losses["baseline"][g] for g in names], "kD-", label="dense baselines (loss-table windows)")
    ax.set(xscale="log", xlabel="parameters (M)", ylabel="validation loss (nats / byte)",
           title="Mix'n'Match: loss vs parameters")
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
