"""Which variant of a bundle an app runs: the reference implementation of the selection rule.

The rule is data in the bundle manifest (``selection``) plus this small function; the web app
(apps/web/selection.js) and the native app (apps/native/selection.hpp) implement the same
function, and tests/apps/test_selection.py feeds all three one table of cases.

Rule: walk the variants best quality first (``order``: ascending keys, e.g. val_loss then
bytes); the first whose every constraint holds wins. A constraint compares one cost of the
variant (its ``measured`` value when the build measured it, else ``predicted``), multiplied by
a device fact named by ``scale`` (e.g. ``slowdown``: this device's benchmarked ms/token over
the benchmarked variant's predicted ms/token), with the device fact named by ``limit`` (e.g.
``available_memory_mb``). A fact that is missing or null is unknown: its constraint is skipped
(a browser without ``navigator.deviceMemory``). When nothing fits, the variant with the least
``otherwise`` cost is chosen and the reason says so.
"""

from __future__ import annotations

import math

# The rule every bundle ships (``selection`` in manifest.json). Apps interpret it; they do not
# hard-code it.
DEFAULT_RULE = {
    "order": ["val_loss", "bytes"],
    "constraints": [
        {"cost": "memory_mb", "limit": "available_memory_mb"},
        {"cost": "decode_ms_per_token", "limit": "decode_ms_per_token", "scale": "slowdown"},
        {"cost": "first_token_ms", "limit": "first_token_ms", "scale": "slowdown"},
    ],
    "otherwise": "memory_mb",
}


def cost_of(variant: dict, name: str) -> float | None:
    """The variant's cost ``name``: measured when the build measured it, else predicted."""
    for source in ("measured", "predicted"):
        value = (variant.get(source) or {}).get(name)
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
    return None


def _known(facts: dict, name: str | None) -> float | None:
    value = facts.get(name) if name else None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def check(variant: dict, rule: dict, facts: dict) -> list[dict]:
    """Each constraint's verdict for one variant: cost (scaled), limit, ok (None when unknown)."""
    out = []
    for c in rule["constraints"]:
        limit = _known(facts, c["limit"])
        cost = cost_of(variant, c["cost"])
        scale = _known(facts, c.get("scale"))
        value = None if cost is None else cost * (scale if scale is not None else 1.0)
        ok = None if limit is None or value is None else value <= limit
        out.append({"cost": c["cost"], "value": value, "limit": limit, "ok": ok})
    return out


def _sort_key(variant: dict, rule: dict) -> tuple:
    keys = (_known(variant, k) for k in rule["order"])
    return tuple(math.inf if k is None else k for k in keys) + (variant["name"],)


def choose(manifest: dict, facts: dict) -> dict:
    """The variant this device runs: {"variant": name, "fits": bool, "reason": str}.

    ``manifest`` needs ``selection`` (the rule) and ``variants`` (a list of records with
    ``name``, the ``order`` keys and ``predicted``/``measured`` costs); ``facts`` holds what the
    device has now (numbers or null)."""
    rule = manifest.get("selection") or DEFAULT_RULE
    variants = sorted(manifest["variants"], key=lambda v: _sort_key(v, rule))
    if not variants:
        raise ValueError("the manifest lists no variants")
    for v in variants:
        verdicts = check(v, rule, facts)
        if all(x["ok"] is not False for x in verdicts):
            return {"variant": v["name"], "fits": True, "reason": _explain(v, verdicts, "fits")}
    key = rule["otherwise"]
    cheapest = min(variants, key=lambda v: (cost_of(v, key) if cost_of(v, key) is not None else math.inf, v["name"]))
    return {"variant": cheapest["name"], "fits": False,
            "reason": _explain(cheapest, check(cheapest, rule, facts), f"nothing fits; least {key}")}


def _explain(variant: dict, verdicts: list[dict], head: str) -> str:
    parts = []
    for x in verdicts:
        if x["ok"] is None:
            parts.append(f"{x['cost']} unknown")
        else:
            parts.append(f"{x['cost']} {x['value']:.3g} {'<=' if x['ok'] else '>'} {x['limit']:.3g}")
    return f"{variant['name']} ({variant.get('spec', '?')}): {head}: " + ", ".join(parts)
