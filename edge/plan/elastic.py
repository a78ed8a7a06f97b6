"""The elastic part of a device's build: choose the members and write one elastic artifact.

Members: the uniform S/M/L/XL and the planner's frontier for the device (the most accurate spec at
several levels of predicted decode latency), plus the spec the planner chose under every limit,
which becomes the default method (``forward``: what a stock runner runs). The artifact stores the
blocks of the members' per-layer maximum (the envelope) once, so the whole artifact must fit the
memory limit: members are dropped, largest memory first, until the envelope fits.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from edge.spec import Spec, format_spec, uniform_specs

FRONTIER_LEVELS = 3  # frontier members besides the uniform ones


def _envelope(specs, config) -> Spec:
    names = config.granularity_names
    return tuple(names[max(names.index(s[l]) for s in specs)] for l in range(config.n_layers))


def frontier_levels(frontier: list, levels: int) -> list:
    """``levels`` frontier points spread evenly by index (cheap to accurate), ends included."""
    if levels < 1:
        return []
    if len(frontier) <= levels:
        return list(frontier)
    step = (len(frontier) - 1) / (levels - 1) if levels > 1 else 0
    return [frontier[round(i * step)] for i in range(levels)]


def choose_members(config, cost_fn, candidates: list, chosen: Spec, memory_mb: float,
                   levels: int = FRONTIER_LEVELS, uniform: Sequence[str] | None = None) -> tuple[dict[str, Spec], str]:
    """({name: spec} cheapest first by predicted decode, default member's name).

    ``uniform``: the granularities whose uniform spec is a member (default: all of them).
    Uniform specs keep their granularity's name; other specs are P1, P2, ... by latency."""
    from edge.plan.planner import pareto_frontier

    every = {spec: name for name, spec in uniform_specs(config).items()}
    uniforms = {spec: name for spec, name in every.items() if uniform is None or name in uniform}
    pool = dict.fromkeys(uniforms)
    frontier = [c for c in pareto_frontier(candidates, "decode_ms_per_token") if c.spec not in every]
    pool.update(dict.fromkeys(c.spec for c in frontier_levels(frontier, levels)))
    pool[tuple(chosen)] = None
    specs = list(pool)

    def memory(specs_):
        return cost_fn(_envelope(specs_, config))["memory_mb"]

    while memory(specs) > memory_mb:
        droppable = [s for s in specs if s != tuple(chosen)]
        if not droppable:
            break  # the chosen spec fits on its own: the planner checked it
        specs.remove(max(droppable, key=lambda s: (cost_fn(s)["memory_mb"], cost_fn(s)["decode_ms_per_token"])))
    specs.sort(key=lambda s: cost_fn(s)["decode_ms_per_token"])
    members, i = {}, 0
    for s in specs:
        if s in every:  # the chosen spec may be uniform without being asked for
            members[every[s]] = s
        else:
            i += 1
            members[f"P{i}"] = s
    default = next(n for n, s in members.items() if s == tuple(chosen))
    return members, default


def build_elastic(model, profile, members: dict[str, Spec], default: str, dest: Path, val_stream,
                  calibration=None, tokenizer=None) -> dict:
    """Export the backend's elastic artifact (``elastic.pte``, ``elastic.tflite``) into ``dest``,
    check every member's parity; the manifest entry. ``val_stream``: parity text;
    ``calibration``: smoothing text for dynamic int8 (exporters.smoothing); ``tokenizer``: the
    model's (its BOS/EOS ids go into the LLM runner's metadata; default the byte tokenizer)."""
    from edge.slicing import slice_model
    from exporters import smoothing
    from exporters.backends import get_backend
    from exporters.base import sha256, write_json
    from exporters.parity import STEPS, check, prompt_tokens, reference

    backend = get_backend(profile.backend)
    module = backend.elastic_exporter()
    path = Path(dest) / f"elastic{backend.suffix}"
    # smoothing changes the universal model in place, exactly and only inside: parity sees the original
    with smoothing.for_export(model, profile.backend, profile.precision, calibration, tokenizer) as sm:
        meta = module.export_elastic(model, members, path, context=profile.context, default=default,
                                     precision=profile.precision, tokenizer=tokenizer)
    if sm is not None:
        meta["smoothing"] = sm
    runner = module.load_runner(path, list(members))
    prompt = prompt_tokens(profile.limits.prompt_tokens, val_stream)
    steps = min(STEPS, profile.context - profile.limits.prompt_tokens - 1)
    parity = {}
    for name, spec in members.items():
        runner.member = name
        parity[name] = check(runner, reference(slice_model(model, spec), prompt, steps), profile.precision)
    failed = [n for n, p in parity.items() if not p["passed"]]
    if failed:
        from edge.plan.steps import ParityFailure

        raise ParityFailure(f"elastic members {failed} failed their parity check: "
                            + json.dumps({n: parity[n]["failures"] for n in failed}))
    meta.update(parity=parity, file_size=path.stat().st_size, sha256=sha256(path))
    write_json(Path(dest) / "elastic.json", meta)
    return {"file": path.name, "metadata": "elastic.json", "default": default,
            "members": {n: format_spec(s) for n, s in members.items()},
            "envelope": meta["envelope"], "bytes": meta["file_size"], "sha256": meta["sha256"],
            "parity": {n: p["passed"] for n, p in parity.items()}}
