"""PNG charts for reports (matplotlib, headless)."""

from __future__ import annotations

import os
from pathlib import Path

from edge.spec import format_spec

COST_LABELS = {"decode_ms_per_token": "decode latency (ms/token)", "first_token_ms": "time to first token (ms)",
               "memory_mb": "memory (MB)"}


def plot_frontier(plan, path: Path, title: str = "") -> Path:
    """Loss vs each limited cost: every scored candidate, the pareto frontier, the limit and the
    chosen spec. Written to a temporary file, then renamed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    costs = [k for k in ("decode_ms_per_token", "first_token_ms", "memory_mb") if k in plan.chosen.costs]
    fig, axes = plt.subplots(1, len(costs), figsize=(5 * len(costs), 4), squeeze=False)
    colors = {"uniform": "tab:red", "monotone": "tab:blue", "evolution": "tab:gray"}
    for ax, cost in zip(axes[0], costs):
        for source, color in colors.items():
            pts = [c for c in plan.candidates if c.source == source]
            ax.scatter([c.costs[cost] for c in pts], [c.loss for c in pts], s=14, c=color, alpha=0.7, label=source)
        front = plan.frontier(cost)
        ax.plot([c.costs[cost] for c in front], [c.loss for c in front], "k-", lw=1, label="pareto frontier")
        if cost in plan.limits:
            ax.axvline(plan.limits[cost], color="tab:orange", ls="--", label="limit")
        ch = plan.chosen
        ax.scatter([ch.costs[cost]], [ch.loss], s=120, marker="*", c="gold", edgecolors="k", zorder=5,
                   label=f"chosen {format_spec(ch.spec)}")
        ax.set_xlabel(COST_LABELS.get(cost, cost))
        ax.set_ylabel("validation loss (nats/token)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
    return path
