"""The steps of one device's build: cost table, cached export, on-device measurement, report."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from edge.device.cost_table import table_path
from edge.checkpoint import atomic_dir
from exporters.logs import quiet_output
from edge.device.costfit import observed
from edge.device.profiles import DeviceProfile
from edge.errors import MatEdgeError
from edge.inputs import read_json
from edge.spec import Spec, compact_spec, format_spec

# -- cost table ------------------------------------------------------------------------------------
def ensure_table(profile: DeviceProfile, config, settings, log=print):
    """(table, status, transport or None): reuse, measure, or estimate the device's cost table."""
    from edge.device.table_source import get_cost_table

    path = table_path(profile.name, profile.precision, root=settings.out_root / "cost_tables")
    got = get_cost_table(profile, config, measure="auto" if settings.measure else "never", path=path, log=log,
                         rounds=settings.profile_rounds, progress=settings.progress,
                         log_path=settings.out_root / "logs" / f"profile-{profile.name}-{profile.precision}.log")
    return got.table, got.status, got.transport


# -- export with a content-addressed cache ------------------------------------------------------------
def artifact_key(ckpt_sha: str, spec: Spec, profile: DeviceProfile) -> str:
    """Content hash of everything that decides an artifact's bytes."""
    from exporters.backends import BACKENDS
    from exporters.base import library_versions
    from exporters.smoothing import applies

    # Every backend's libraries (not only this one's), as the cache has always been keyed.
    libs = library_versions(*sorted({d for b in BACKENDS.values() for d in b.libraries}))
    blob = json.dumps({"ckpt": ckpt_sha, "spec": list(spec), "backend": profile.backend,
                       "precision": profile.precision, "context": profile.context,
                       "prefill": profile.limits.prompt_tokens, "libs": libs,
                       **({"smoothing": sm} if (sm := applies(profile.backend, profile.precision)) else {})},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class ParityFailure(Exception):
    """An exported artifact does not match eager PyTorch: it is not shipped."""


def export_cached(model, spec: Spec, profile: DeviceProfile, settings, ckpt_sha: str, dest: Path, role: str,
                  val_stream=None, log=print, calibration=None) -> dict:
    """Export ``spec`` (or reuse the cached export) and copy it into ``dest``; its metadata.
    ``val_stream``: parity text; ``calibration``: smoothing text (exporters.smoothing), both
    the checkpoint's own tokens."""
    from edge.slicing import slice_model
    from edge.tokenizer import load_tokenizer
    from exporters import export_model
    from exporters.parity import summary as parity_summary

    key = artifact_key(ckpt_sha, spec, profile)
    cached = settings.out_root / "cache" / key
    if not cached.exists():
        log(f"   exporting {role} {compact_spec(spec)} ({profile.backend} {profile.precision}) with parity check")
        with atomic_dir(cached, kind="cache") as tmp, quiet_output(settings.out_root / "logs" / f"export-{key}.log"):
            art = export_model(slice_model(model, spec, share=True), profile.backend, profile.precision, tmp,
                               context=profile.context, prefill_len=profile.limits.prompt_tokens, name="model",
                               val_stream=val_stream, tokenizer=load_tokenizer(settings.checkpoint),
                               calibration=calibration)
            if not art.meta.get("parity", {}).get("passed"):
                record = art.meta.get("parity")
                raise ParityFailure(f"{role} {compact_spec(spec)} failed its parity check: "
                                    + (parity_summary(record) if record else "no parity record"))
    else:
        log(f"   {role} {compact_spec(spec)}: cached artifact {key}")
    meta_file, _ = cached_artifact(cached)
    meta = read_json(meta_file, "cached artifact metadata")
    # The artifact's files (model + e.g. .litertlm) take the role's name; the tokenizer files keep
    # theirs (every role of one build shares the checkpoint's tokenizer).
    files = meta.get("files") or {"model": {"file": meta["file"]}}
    names = {}
    for kind, f in files.items():
        if not isinstance(f, dict) or not isinstance(f.get("file"), str) or Path(f["file"]).name != f["file"]:
            raise MatEdgeError(f"cache entry {str(cached)!r} is damaged (a file it names is not in it); delete it")
        src = cached / f["file"]
        names[kind] = src.name if kind.startswith("tokenizer") else f"{role}{''.join(src.suffixes)}"
        if not (dest / names[kind]).exists() or not kind.startswith("tokenizer"):
            copy_artifact(src, dest / names[kind])
    copy_artifact(meta_file, dest / f"{role}.json")
    return {"file": names["model"], "files": names, "metadata": f"{role}.json", "spec": format_spec(spec),
            "cache_key": key, "bytes": meta["file_size"], "sha256": meta.get("sha256"),
            "parity": meta.get("parity")}


def cached_artifact(folder: Path) -> tuple[Path, Path]:
    """(metadata JSON, artifact) of a cache entry: the artifact is the file its metadata names."""
    meta_file = folder / "model.json"
    meta = read_json(meta_file, "cached artifact metadata")
    name = meta.get("file") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not (folder / name).exists() or Path(name).name != name:
        raise MatEdgeError(f"cache entry {str(folder)!r} is damaged (its metadata names no artifact); delete it")
    return meta_file, folder / name


# -- measurement ---------------------------------------------------------------------------------------
def measure_on_device(transport, profile: DeviceProfile, artifact: dict, settings, table: dict, log=print) -> dict | None:
    """Latency and peak memory of the shipped artifact on the device (None when unreachable).

    Latency uses the statistic the cost table was fitted with (median or min of the runs), so
    the prediction and the measurement in the report mean the same thing."""
    from edge.device.runners import measure_artifact

    if transport is None:
        return None
    # Measured straight from the cache: the same bytes as the shipped copy.
    _, art = cached_artifact(settings.out_root / "cache" / artifact["cache_key"])
    log(f"   measuring {compact_spec(artifact['spec'])} on {profile.name}")
    m = measure_artifact(transport, profile, art, settings.runs, settings.warmup)
    stat = table.statistic
    return {"decode_ms_per_token": observed(m, "decode_ms", stat), "decode_p90_ms": m["decode_p90_ms"],
            "first_token_ms": observed(m, "prefill_ms", stat), "first_token_p90_ms": m["prefill_p90_ms"],
            "memory_mb": m["peak_rss_bytes"] / 2**20, "arena_bytes": m.get("arena_bytes"), "statistic": stat}


# -- report ------------------------------------------------------------------------------------------
def write_report(folder: Path, manifest, result, table) -> None:
    """report.md with the decision (a Manifest), the limits, the frontier and cost charts."""
    from edge.device.chart import plot_table
    from edge.plan.plots import plot_frontier
    from edge.texttable import format_table

    plot_frontier(result, folder / "frontier.png", f"{manifest.device}: candidates under the limits")
    plot_table(table, folder / "costs.png")
    meas = manifest.measured or {}
    rows = [[k, v, manifest.predicted[k], meas.get(k, "-")] for k, v in manifest.limits.items()]
    best = sorted(result.candidates, key=lambda c: c.loss)[:10]
    tag = "ESTIMATED (device not reachable: roofline from [hardware])" if manifest.estimated else "measured"
    uni = manifest.best_uniform
    lines = [
        f"# {manifest.device}: {manifest.spec}", "", manifest.description, "",
        f"- backend {manifest.backend}, precision {manifest.precision}, {manifest.threads} thread(s), "
        f"context {manifest.context}",
        f"- costs: {tag}; cost table: {manifest.cost_table}",
        f"- chosen spec `{manifest.spec}` ({manifest.source}): {manifest.params:,} parameters, "
        f"val loss {manifest.val_loss:.4f}",
        f"- best uniform granularity that fits: " + (f"`{uni['spec']}` val loss {uni['val_loss']:.4f} "
                                                      f"(planner better by {uni['val_loss'] - manifest.val_loss:.4f})"
                                                      if uni else "none fits"),
        f"- consistency with XL: {manifest.consistency_with_xl['agreement_pct']:.1f}% greedy agreement, "
        f"KL {manifest.consistency_with_xl['kl']:.4f}",
        f"- fallback: " + (f"`{manifest.fallback['spec']}`" if manifest.fallback else "none (memory not tight)"),
        "", "## Limits", "", f"Latency is the {table.statistic} of the timed runs, as in the cost table.", "",
        "```", format_table(["limit", "max", "predicted", "measured"], rows), "```",
        "", "## Best candidates", "", "```",
        format_table(["spec", "source", "params", "val loss", *best[0].costs], [c.row() for c in best]), "```",
        "", "## Parity", "", "```", json.dumps({r: a.get("parity") for r, a in manifest.artifacts.items()}, indent=2),
        "```", "", "![frontier](frontier.png)", "", "![costs](costs.png)", "",
    ]
    (folder / "report.md").write_text("\n".join(lines))


def copy_artifact(src: Path, dst: Path) -> None:
    """Copy a file or package folder (hard links where possible: the cache is read-only)."""
    if src.is_dir():
        shutil.copytree(src, dst, copy_function=_link_or_copy)
    else:
        _link_or_copy(src, dst)


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
