"""A cost table as a PNG: per-granularity latency (prefill, decode) and memory per layer."""

from __future__ import annotations

from pathlib import Path

from edge.device.cost_table import CostTable
from edge.fsguard import check_file_destination

# A text chunk in every PNG this module writes: the mark that lets a later run replace it.
CHART_KEY, CHART_VALUE = "matedge", "cost table chart"


def is_chart_file(path: Path) -> bool:
    """True when ``path`` is a PNG this module wrote (it carries the chart's text chunk)."""
    from PIL import Image, UnidentifiedImageError

    try:  # Image.open reads the header and the chunks before the pixels, not the image
        with Image.open(path) as im:
            return im.format == "PNG" and im.info.get(CHART_KEY) == CHART_VALUE
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError):
        return False


def check_chart_destination(path: str | Path, force: bool = False, what: str = "--chart") -> Path:
    """Refuse a PNG path that holds a file this tool did not write (unless ``force``)."""
    return check_file_destination(path, is_chart_file, force, what)


def plot_table(table: dict, path: Path, force: bool = False) -> Path:
    """PNG: per-granularity latency (prefill, decode) and memory (weights, arena, runtime) per layer.

    An existing file at ``path`` is replaced only when it is a chart this function wrote, or
    with ``force``."""
    path = check_chart_destination(path, force)
    table = CostTable(table)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table.layers)
    lay = [table.layers[g] for g in names]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, key, label in ((axes[0], "prefill_ms", f"prefill of {table.prompt_tokens} tokens"),
                           (axes[1], "decode_ms", "decode, per token")):
        ax.bar(names, [c[key] for c in lay], color="#4c72b0")
        spread = [max(0.0, c[key.replace("_ms", "_p90_ms")] - c[key]) for c in lay]  # up to p90
        ax.errorbar(names, [c[key] for c in lay], yerr=[[0.0] * len(lay), spread], fmt="none", ecolor="black", capsize=3)
        terms = table.spill.get(key, [])
        extra = "".join(f"; +{t['ms_per_mib']:.3f} ms/MiB past {t['above_bytes'] / 2**20:.1f} MiB" for t in terms)
        ax.set_title(f"{label} (ms / layer)\nfixed part {table.fixed[key]:.3f} ms{extra}", fontsize=10)
    bottom = [0.0] * len(lay)
    for key, color in (("weight_bytes", "#4c72b0"), ("arena_bytes", "#55a868"), ("runtime_bytes", "#c44e52")):
        vals = [c[key] / 2**20 for c in lay]
        axes[2].bar(names, vals, bottom=bottom, color=color, label=key.replace("_bytes", ""))
        bottom = [b + v for b, v in zip(bottom, vals)]
    axes[2].set_title("memory (MiB / layer)", fontsize=10)
    axes[2].legend(fontsize=8)
    tag = " [estimated]" if table.estimated else ""
    fig.suptitle(f"{table.device}: {table.backend} {table.precision}, {table.threads} thread(s), "
                 f"context {table.context}{tag}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, metadata={CHART_KEY: CHART_VALUE})
    plt.close(fig)
    tmp.replace(path)
    return path
