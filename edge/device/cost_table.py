"""Cost tables and the predictor: latency and memory of any Mix'n'Match spec on a device.

A cost table (JSON, one per device and precision) holds the measured cost of the *fixed* parts
(embedding, final norm, head, runtime) and of *one layer* at each granularity:

    latency(spec) = fixed + sum over layers of layer[g]            (prefill and decode, ms)
                  + spill: sum over its terms of ms_per_mib * max(0, weights(spec) - above_bytes) / MiB
    memory(spec)  = weights + arena + runtime                      (bytes), each part fixed + sum:
        weights : exact bytes of the artifact's weights (additive per layer; from file sizes)
        arena   : planned memory of the program (activations + the KV cache of each layer)
        runtime : the rest of the runner's peak RSS (runtime baseline, packed weight copies)

Why the spill term: per-layer costs are additive only while the model's weights stay in the
CPU's caches. Past that, every further MiB of weights is read from a slower level on every token,
so big specs cost more than the sum of their layers (measured on the host, fp32: all-XL at 23 MiB
took 15% longer than the additive fit said). The profiler fits up to two knees (``above_bytes``)
with their slopes per latency key, a convex piecewise-linear curve, and keeps them only where they
predict held-out micro-models better (leave-one-out); tables without them stay additive.

Schema ``matedge.cost_table/1`` (every key required unless marked optional):

    schema, device, backend, precision, threads, context, prompt_tokens, estimated (bool),
    model       {vocab_size, d_model, n_heads, n_kv_heads, d_ff, widths: {g: hidden units}}
    fixed       {prefill_ms, prefill_p90_ms, decode_ms, decode_p90_ms, weight_bytes, arena_bytes, runtime_bytes}
    layers      {g: same keys as fixed} for every granularity in model.widths
    spill       [optional] {latency key: [{above_bytes, ms_per_mib}, ...]} for any of the four latency keys
    micro       [optional] raw micro-model measurements the fit came from
    errors      [optional] micro-models that failed (name, stderr)
    provenance  {device, transport, cpu_model, libraries, date, runs, warmup, runner}

In code a table is a ``CostTable``: the JSON document itself (a dict, so it is written and
compared as is) with typed accessors, ``predict`` and ``check_model``; ``load_table``,
``write_table`` and ``validate_table`` read, write and check one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from edge.errors import MatEdgeError
from edge.fsguard import atomic_write_text, check_file_destination
from edge.inputs import SAFE_ID_TEXT, in_range, is_safe_id, range_text, read_json, safe_id

SCHEMA = "matedge.cost_table/1"
LATENCY_KEYS = ("prefill_ms", "prefill_p90_ms", "decode_ms", "decode_p90_ms")
SPILL_KEYS = ("above_bytes", "ms_per_mib")
COST_KEYS = ("prefill_ms", "prefill_p90_ms", "decode_ms", "decode_p90_ms", "weight_bytes", "arena_bytes",
             "runtime_bytes")
MODEL_KEYS = ("vocab_size", "d_model", "n_heads", "n_kv_heads", "d_ff")
TOP_KEYS = ("schema", "device", "backend", "precision", "threads", "context", "prompt_tokens", "estimated",
            "model", "fixed", "layers", "provenance")
PROVENANCE_KEYS = ("device", "transport", "cpu_model", "libraries", "date", "runs", "warmup", "runner")


class CostTableError(MatEdgeError):
    """A cost table is missing, malformed, or does not describe the model asked about."""


def _int(v, key: str) -> bool:
    return in_range(v, key, integer=True)


def _header_problems(t: dict) -> list[str]:
    """Identity fields: safe ids (they become file names), a known backend and precision, ranges."""
    from edge.device.profiles import BACKEND_PRECISIONS

    p = []
    for k in ("threads", "context", "prompt_tokens"):
        if k in t and not _int(t[k], k):
            p.append(f"{k} = {t[k]!r} (allowed: {range_text(k, integer=True)})")
    if "device" in t and not is_safe_id(t["device"]):
        p.append(f"device = {t['device']!r} (allowed: {SAFE_ID_TEXT})")
    backend, precision = t.get("backend"), t.get("precision")
    if "backend" in t and backend not in BACKEND_PRECISIONS:
        p.append(f"backend = {backend!r} (allowed: {', '.join(BACKEND_PRECISIONS)})")
    elif backend in BACKEND_PRECISIONS and precision not in BACKEND_PRECISIONS[backend]:
        p.append(f"precision = {precision!r} (allowed for {backend}: {', '.join(BACKEND_PRECISIONS[backend])})")
    return p


def validate_table(t) -> list[str]:
    """Every problem of a parsed cost table (empty list: valid)."""
    if not isinstance(t, dict):
        return [f"top level is {type(t).__name__} (allowed: a JSON object)"]
    p = [f"{k}: missing" for k in TOP_KEYS if k not in t]
    p += [f"{k}: unknown field" for k in sorted(set(t) - set(TOP_KEYS) - {"micro", "errors", "spill"})]
    if t.get("schema", SCHEMA) != SCHEMA:
        p.append(f"schema = {t['schema']!r} (allowed: {SCHEMA!r})")
    p += _header_problems(t)
    if "estimated" in t and not isinstance(t["estimated"], bool):
        p.append(f"estimated = {t['estimated']!r} (allowed: true or false)")
    model = t.get("model")
    if not isinstance(model, dict):
        return p + ([f"model = {model!r} (allowed: an object)"] if "model" in t else [])
    p += [f"model.{k} = {model.get(k)!r} (allowed: {range_text(k, integer=True)})" for k in MODEL_KEYS
          if not _int(model.get(k), k)]
    widths = model.get("widths")
    if not (isinstance(widths, dict) and 0 < len(widths) <= 16 and all(_int(w, "d_ff") for w in widths.values())
            and all(is_safe_id(g) for g in widths)):
        return p + [f"model.widths = {str(widths)[:80]!r} (allowed: {{granularity name: {range_text('d_ff', True)}}})"]
    p += _check_costs(t.get("fixed"), "fixed")
    layers = t.get("layers")
    if not isinstance(layers, dict):
        return p + [f"layers = {layers!r} (allowed: {{granularity: costs}})"]
    if set(layers) != set(widths):
        p.append(f"layers has {sorted(layers)} (allowed: exactly the granularities {sorted(widths)})")
    for g, costs in layers.items():
        p += _check_costs(costs, f"layers.{g}")
    if "spill" in t:
        p += _check_spill(t["spill"])
    prov = t.get("provenance")
    if isinstance(prov, dict):
        p += [f"provenance.{k}: missing" for k in PROVENANCE_KEYS if k not in prov]
    elif "provenance" in t:
        p.append(f"provenance = {prov!r} (allowed: an object)")
    return p


def _check_costs(c, where: str) -> list[str]:
    """Every cost is finite and non-negative (a negative one predicts negative latencies)."""
    if not isinstance(c, dict):
        return [f"{where} = {str(c)[:60]!r} (allowed: an object with {', '.join(COST_KEYS)})"]
    p = [f"{where}.{k}: missing" for k in COST_KEYS if k not in c]
    p += [f"{where}.{k}: unknown field" for k in sorted(set(c) - set(COST_KEYS))]
    for k in COST_KEYS:
        kind = "latency_ms" if k in LATENCY_KEYS else "bytes"
        if k in c and not in_range(c[k], kind):
            p.append(f"{where}.{k} = {c[k]!r} (allowed: {range_text(kind)})")
    return p


def _check_spill(spill) -> list[str]:
    allowed = (f"an object {{latency key: [{{{', '.join(SPILL_KEYS)}}}, ...]}} with latency keys from "
               f"{', '.join(LATENCY_KEYS)}")
    if not isinstance(spill, dict):
        return [f"spill = {spill!r} (allowed: {allowed})"]
    p = [f"spill.{k}: unknown latency key (allowed: {', '.join(LATENCY_KEYS)})" for k in spill if k not in LATENCY_KEYS]
    for k, terms in spill.items():
        if not isinstance(terms, list):
            p.append(f"spill.{k} = {terms!r} (allowed: a list of objects with exactly {', '.join(SPILL_KEYS)})")
            continue
        for i, term in enumerate(terms):
            if not isinstance(term, dict) or set(term) != set(SPILL_KEYS):
                p.append(f"spill.{k}[{i}] = {term!r} (allowed: an object with exactly {', '.join(SPILL_KEYS)})")
                continue
            p += [f"spill.{k}[{i}].{f} = {term[f]!r} (allowed: {range_text(kind)})"
                  for f, kind in (("above_bytes", "bytes"), ("ms_per_mib", "ms_per_mib")) if not in_range(term[f], kind)]
    return p


class CostTable(dict):
    """A device's cost table (the JSON document above), read through typed properties."""

    def predict(self, spec: Sequence[str]) -> dict:
        """Latency and memory of ``spec`` (see ``predict``)."""
        return predict(self, spec)

    def check_model(self, config) -> None:
        """CostTableError unless the table was measured for ``config``'s geometry."""
        check_model(self, config)

    device = property(lambda self: str(self["device"]), doc="the device profile's name")
    backend = property(lambda self: str(self["backend"]))
    precision = property(lambda self: str(self["precision"]))
    threads = property(lambda self: int(self["threads"]))
    context = property(lambda self: int(self["context"]))
    prompt_tokens = property(lambda self: int(self["prompt_tokens"]), doc="the prefill length it was measured with")
    estimated = property(lambda self: bool(self["estimated"]), doc="a roofline estimate, not a measurement")
    fixed = property(lambda self: self["fixed"], doc="{cost key: value} of the fixed parts")
    layers = property(lambda self: self["layers"], doc="{granularity: {cost key: value}} of one layer")
    spill = property(lambda self: self.get("spill", {}), doc="{latency key: [{above_bytes, ms_per_mib}]}")
    provenance = property(lambda self: self.get("provenance", {}))
    errors = property(lambda self: self.get("errors", []), doc="micro-models that failed")

    @property
    def statistic(self) -> str:
        """The latency statistic the table was fitted with: "median" (the default) or "min"."""
        return self.provenance.get("statistic", "median")


def load_table(path: str | Path) -> CostTable:
    """Read and validate a cost table; CostTableError lists every problem."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise CostTableError(f"cost table {str(path)!r} not found (measure one with `matedge profile --device NAME`)")
    try:
        table = read_json(path, "cost table")
    except MatEdgeError as e:
        raise CostTableError(str(e)) from None
    problems = validate_table(table)
    if problems:
        raise CostTableError(f"{path}: {len(problems)} problem(s): " + "; ".join(problems[:12]))
    return CostTable(table)


def write_table(table: dict, path: str | Path, force: bool = False) -> Path:
    """Validate, then write atomically (temporary sibling + rename): never half-written. An
    existing file at ``path`` is replaced only if it is a cost table (or with ``force``)."""
    problems = validate_table(table)
    if problems:
        raise CostTableError("refusing to write an invalid cost table: " + "; ".join(problems[:12]))
    path = check_file_destination(path, is_table_file, force)
    return atomic_write_text(path, json.dumps(table, indent=2) + "\n")


def is_table_file(path: Path) -> bool:
    """True when ``path`` holds a cost table (matedge wrote it: it may be replaced)."""
    try:
        data = read_json(path, "cost table")
    except MatEdgeError:
        return False
    return isinstance(data, dict) and data.get("schema") == SCHEMA


def check_model(table: dict, config) -> None:
    """Raise unless ``table`` was measured for ``config``'s geometry (layer count may differ)."""
    m = table["model"]
    mine = {k: getattr(config, k) for k in MODEL_KEYS}
    diff = [f"{k} {m[k]} vs {mine[k]}" for k in MODEL_KEYS if m[k] != mine[k]]
    if dict(m["widths"]) != dict(config.widths):
        diff.append(f"widths {m['widths']} vs {config.widths}")
    if diff:
        raise CostTableError(f"cost table of {table['device']} was measured for another model geometry "
                             f"({'; '.join(diff)}); profile the device again for this model")


def _check_spec(table: dict, spec: Sequence[str]) -> None:
    unknown = sorted(set(spec) - set(table["layers"]))
    if unknown or not spec:
        raise CostTableError(f"spec {','.join(spec)!r}: granularities {unknown} are not in the cost table "
                             f"(allowed: {', '.join(table['layers'])})")


def predict_latency(table: dict, spec: Sequence[str]) -> dict:
    """{prefill_ms, prefill_p90_ms, decode_ms, decode_p90_ms}: fixed + sum over layers, plus the
    table's cache-spill term where it has one."""
    _check_spec(table, spec)
    weights = _sum(table, spec, "weight_bytes")
    return {k: _sum(table, spec, k) + spill_ms(table.get("spill", {}).get(k), weights) for k in LATENCY_KEYS}


def spill_ms(terms: list | None, weight_bytes: float) -> float:
    """Extra latency of weights beyond the cache knees: sum of ms_per_mib * max(0, weights - above) / MiB."""
    return sum(t["ms_per_mib"] * max(0.0, weight_bytes - t["above_bytes"]) / 2**20 for t in terms or ())


def _sum(table: dict, spec: Sequence[str], key: str) -> float:
    return table["fixed"][key] + sum(table["layers"][g][key] for g in spec)


def predict_memory(table: dict, spec: Sequence[str]) -> dict:
    """{weight_bytes, arena_bytes, runtime_bytes, total_bytes} of the runner at ``spec``."""
    _check_spec(table, spec)
    parts = {k: _sum(table, spec, k) for k in ("weight_bytes", "arena_bytes", "runtime_bytes")}
    return {**parts, "total_bytes": sum(parts.values())}


def predict(table: dict, spec: Sequence[str]) -> dict:
    """Latency and memory of ``spec``, flagged ``estimated`` when the table is a roofline estimate."""
    return {**predict_latency(table, spec), **predict_memory(table, spec), "estimated": table["estimated"]}


def table_path(device: str, precision: str, root: str | Path = "build/cost_tables") -> Path:
    """Where ``matedge profile`` keeps a device's table: build/cost_tables/<device>-<precision>.json
    (both parts must be safe identifiers: a table's strings never escape ``root``)."""
    return Path(root) / f"{safe_id(device, 'device')}-{safe_id(precision, 'precision')}.json"
