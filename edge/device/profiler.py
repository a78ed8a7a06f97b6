"""The profiler: measure what each granularity costs on a device and fit its cost table.

It exports the micro-models (``edge.device.micro``) in the device's backend and precision, runs
each on the device in its own runner process (``edge.device.runners``: warm-up, then N timed runs
of ``prefill`` and ``decode``; round-robin over several rounds, median of the rounds), and fits

    cost(micro-model) = fixed + sum over its layers of layer[g]   (+ cache-spill terms)

over all of them (``edge.device.costfit``), for latency and for memory: artifact bytes
(weights), the program's planned arena (activations + KV cache) and the rest of the runner's
peak RSS. A device that cannot be reached gets a roofline estimate instead
(``edge.device.estimate``), marked ``estimated``.
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
import datetime as dt
import sys
from pathlib import Path

from edge import interrupt
from edge.device.costfit import fit_costs
from edge.device.micro import micro_jobs, micro_layouts
from edge.device.cost_table import SCHEMA, CostTable
from edge.device.profiles import DeviceProfile
from edge.device.runners import RUNNER_LABELS, ProfilerError, measure_artifact
from edge.device.transports import get_transport
from edge.errors import MatEdgeError
from exporters.backends import get_backend
from exporters.logs import quiet_output


def export_artifact(model, profile: DeviceProfile, out_dir: Path, name: str) -> Path:
    """Export a dense model in the profile's backend and precision (no parity: timing only)."""
    from exporters import export_model
    from edge.tokenizer import stand_in_tokenizer

    # Timing only: a stand-in tokenizer of the model's vocabulary size (LiteRT-LM packs one into
    # its file; the timing runs never read text, and micro-models have no tokenizer of their own).
    # No int8 smoothing: it changes weights only, never the graph, so timings are the same.
    art = export_model(model, profile.backend, profile.precision, out_dir, name=name, parity=False,
                       context=profile.context, prefill_len=profile.limits.prompt_tokens,
                       tokenizer=stand_in_tokenizer(model.config.vocab_size), smooth=False)
    return Path(art.path)



def table_header(profile: DeviceProfile, config, estimated: bool) -> CostTable:
    """The fields every cost table starts with: device, backend, lengths and the model geometry."""
    return CostTable({"schema": SCHEMA, "device": profile.name, "backend": profile.backend, "precision": profile.precision,
            "threads": profile.threads, "context": profile.context, "prompt_tokens": profile.limits.prompt_tokens,
            "estimated": estimated,
            "model": {"vocab_size": config.vocab_size, "d_model": config.d_model, "n_heads": config.n_heads,
                      "n_kv_heads": config.n_kv_heads, "d_ff": config.d_ff, "widths": dict(config.widths)}})


def library_versions(backend: str) -> dict:
    """Versions of the libraries a backend's cost table depends on (its registry record's list)."""
    from importlib import metadata

    out = {}
    for d in get_backend(backend).libraries:
        try:
            out[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            pass
    return out


def export_all(profile: DeviceProfile, jobs: list, out_dir: Path, progress: bool = True,
               log_path: Path | None = None) -> tuple[dict, list]:
    """Export ``jobs`` [(name, make_model)] in the profile's backend; -> ({name: path}, errors).

    A failed export is recorded (name, error) and the others carry on. ``log_path``: append the
    converters' output there instead of the terminal (the progress bar stays on the terminal).
    """
    from tqdm import tqdm

    found, errors = {}, []
    for name, make_model in tqdm(jobs, desc=f"export ({profile.backend} {profile.precision})", disable=not progress):
        try:
            with quiet_output(log_path, mode="a") if log_path else nullcontext():
                found[name] = export_artifact(make_model(), profile, Path(out_dir), name)
        except MatEdgeError as e:
            errors.append({"name": name, "stage": "export", "error": str(e)})
            print(f"warning: export of {name} failed: {e}", file=sys.stderr)
    return found, errors


def measure_all(transport, profile: DeviceProfile, found: dict, *, runs: int, warmup: int, rounds: int,
                progress: bool = True) -> tuple[dict, list]:
    """Run every artifact ``rounds`` times (each run its own process), in a fresh random order
    every round, and keep the median of the rounds: micro-models and the specs they predict then
    see the same mix of a shared machine's load. A runner that crashes is recorded with its
    stderr and the others carry on."""
    import random

    from tqdm import tqdm

    samples: dict[str, list[dict]] = {n: [] for n in found}
    errors, rng = [], random.Random(0)
    for _ in tqdm(range(rounds), desc=f"measure on {profile.name}", disable=not progress):
        for name, path in rng.sample(list(found.items()), len(found)):
            try:
                samples[name].append(measure_artifact(transport, profile, path, runs, warmup))
            except ProfilerError as e:
                errors.append({"name": name, "stage": "run", "error": str(e)})
                print(f"warning: {e}", file=sys.stderr)
    return {n: _median_of(s) for n, s in samples.items() if s}, errors


def table_from(profile: DeviceProfile, config, transport, measured: dict, errors: list, *, runs: int, warmup: int,
               rounds: int, statistic: str = "median", calibration: int | None = None) -> CostTable:
    """Fit micro-model measurements ({name: measurement}) into a cost table with provenance."""
    layouts = dict(micro_layouts(config, calibration))
    micro = [{"name": n, "layers": list(layouts[n]), **m} for n, m in measured.items() if n in layouts]
    fixed, layers, spill = fit_costs(micro, config.granularity_names, statistic, full_depth=config.n_layers)
    table = table_header(profile, config, estimated=False)
    table.update(fixed=fixed, layers=layers, **({"spill": spill} if spill else {}), micro=micro, errors=errors,
                 provenance={**transport.describe(), "device": profile.name, "libraries": library_versions(profile.backend),
                             "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                             "runs": runs, "warmup": warmup, "rounds": rounds, "statistic": statistic,
                             "runner": RUNNER_LABELS[get_backend(profile.backend).runner],
                             "method": get_backend(profile.backend).cost_method})
    return table


def measure_table(profile: DeviceProfile, config, *, runs: int = 100, warmup: int = 10, rounds: int = 5,
                  statistic: str = "median", transport=None, progress: bool = True, work_dir: Path | None = None,
                  log_path: Path | None = None) -> CostTable:
    """Export and run every micro-model on the device; fit and return the cost table.

    Failed micro-models are listed under ``errors``; the fit needs at least one micro-model per
    granularity plus one more.
    """
    profile = clamp_to_model(profile, config)
    transport = transport or get_transport(profile.transport)
    transport.check()  # an unreachable device fails now, not after minutes of exports
    with interrupt.temp_dir("matedge-profile-", work_dir) as tmp:  # removed on SIGINT/SIGTERM too
        if log_path:  # this run's converter output only
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            Path(log_path).write_text("")
        found, errors = export_all(profile, micro_jobs(config), Path(tmp), progress, log_path)
        measured, run_errors = measure_all(transport, profile, found, runs=runs, warmup=warmup, rounds=rounds,
                                           progress=progress)
    return table_from(profile, config, transport, measured, errors + run_errors, runs=runs, warmup=warmup, rounds=rounds,
                      statistic=statistic)


def clamp_to_model(profile: DeviceProfile, config) -> DeviceProfile:
    """The profile with its context capped at the model's max_context (the cache cannot be
    longer) and, if the prompt then does not fit, the prompt halved to the context (the table
    records the lengths it was measured with, and a warning says so)."""
    context = min(profile.context, config.max_context)
    prompt = profile.limits.prompt_tokens
    if prompt >= context:
        prompt = context // 2
        print(f"warning: {profile.name}: prompt_tokens {profile.limits.prompt_tokens} does not fit the model's "
              f"context {context}; measuring a prompt of {prompt}", file=sys.stderr)
    return dataclasses.replace(profile, context=context, limits=dataclasses.replace(profile.limits, prompt_tokens=prompt))


def _median_of(samples: list[dict]) -> dict:
    import statistics

    return {k: statistics.median(s[k] for s in samples) for k in samples[0]}
