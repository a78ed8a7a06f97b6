"""The profiler: measure what each granularity costs on a device and write its cost table.

Micro-models. The profiler exports small dense ``MatFormerLM`` models in the device's backend
and precision: one layer at each granularity g, and ``CALIBRATION_MODELS`` mixed models of the
target depth (random per-layer granularities, fixed seed). Each runs on the device in its own
runner process (warm-up, then N timed runs of ``prefill`` and ``decode``; median and p90). A
least-squares fit of

    cost(micro-model) = fixed + sum over its layers of layer[g]

over all of them (``edge.costfit``) separates the fixed parts (embedding, final norm, head,
runtime overhead) from the per-layer cost of each width, plus, where they predict better,
cache-spill terms for weights past one or two cache knees. Two depths rather than "one layer minus
nothing": a model cannot have zero layers, and the deep micro-models put each layer in the
cache/bandwidth regime it will see in the real model. The same fit applies to memory: artifact
bytes (weights), the program's planned arena (activations + KV cache) and the rest of the
runner's peak RSS.

Runners never import torch: ExecuTorch programs run in ``apps/cpp`` (``matedge_runner``, built
once with CMake against the executorch wheel and cached), LiteRT files in
``edge/runner_litert.py`` (imports only ai-edge-litert). A device that cannot be reached
(transport ``none``) gets a roofline estimate from its profile's ``[hardware]`` facts instead,
marked ``estimated``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from edge.errors import MatEdgeError
from edge.costfit import fit_costs, observed, table_statistic
from edge.predictor import SCHEMA
from edge.profiles import DeviceProfile
from edge.transports import get_transport, parse_transport

REPO = Path(__file__).resolve().parent.parent
CPP_DIR = REPO / "apps" / "cpp"
CPP_BUILD = CPP_DIR / "build"
LITERT_RUNNER = Path(__file__).resolve().parent / "runner_litert.py"
RUNNER_TIMEOUT_S = 120.0


class ProfilerError(MatEdgeError):
    """Profiling cannot proceed (no runner for the backend, build failed, a runner crashed)."""


# -- runners -------------------------------------------------------------------------------------
def executorch_root() -> Path:
    """The installed executorch package folder (found without importing it)."""
    spec = importlib.util.find_spec("executorch")
    if spec is None or not spec.submodule_search_locations:
        raise ProfilerError("the ExecuTorch runner needs the executorch wheel: pip install 'matformer-edge[executorch]'")
    return Path(list(spec.submodule_search_locations)[0])


def package_root(name: str, extra: str = "executorch") -> Path:
    """An installed package's folder (found without importing it)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ProfilerError(f"the ExecuTorch runner needs the Python package {name!r}: pip install 'matformer-edge[{extra}]'")
    return Path(list(spec.submodule_search_locations)[0])


def ensure_cpp_runner(build_dir: Path = CPP_BUILD, rebuild: bool = False) -> Path:
    """Build ``matedge_runner`` with CMake once; reuse it while its sources are unchanged."""
    binary = Path(build_dir) / "matedge_runner"
    sources = [CPP_DIR / "runner.cpp", CPP_DIR / "CMakeLists.txt"]
    if not rebuild and binary.is_file() and all(binary.stat().st_mtime >= s.stat().st_mtime for s in sources):
        return binary
    if shutil.which("cmake") is None:
        raise ProfilerError("building the ExecuTorch runner needs cmake and a C++ compiler (apt-get install cmake g++)")
    steps = [["cmake", "-S", str(CPP_DIR), "-B", str(build_dir), f"-DEXECUTORCH_ROOT={executorch_root()}",
              f"-DPYTORCH_TOKENIZERS_ROOT={package_root('pytorch_tokenizers')}",
              f"-DPython3_EXECUTABLE={sys.executable}", "-DCMAKE_BUILD_TYPE=Release"],
             ["cmake", "--build", str(build_dir), "-j2"]]
    for step in steps:
        r = subprocess.run(step, capture_output=True, text=True)
        if r.returncode != 0:
            tail = " | ".join((r.stdout + r.stderr).strip().splitlines()[-3:])
            raise ProfilerError(f"building apps/cpp failed ({' '.join(step[:2])}): {tail}")
    return binary


def runner_command(profile: DeviceProfile, artifact: Path, runs: int, warmup: int) -> list:
    """The command a transport runs: files to ship are Paths, literal arguments are strings."""
    args = ["--model", Path(artifact), "--methods", "prefill,decode", "--runs", str(runs),
            "--warmup", str(warmup), "--threads", str(profile.threads)]
    if profile.backend == "executorch":  # its "prefill" phase: forward of the prompt at position 0
        return [ensure_cpp_runner(), *args, "--prompt-tokens", str(profile.limits.prompt_tokens)]
    if profile.backend == "litert":
        local = parse_transport(profile.transport)["kind"] == "local"
        return [sys.executable if local else "python3", LITERT_RUNNER, *args]
    raise ProfilerError(f"no runner for backend {profile.backend!r} on this machine: measure on the device "
                        f"(the sample app's benchmark mode) and `matedge profile import` its table")


def parse_runner_output(result, name: str) -> dict:
    """One measurement from a runner's JSON; ProfilerError carries its stderr if it failed."""
    if result.returncode != 0:
        err = " | ".join(result.stderr.strip().splitlines()[-3:]) or "no output"
        raise ProfilerError(f"runner failed on {name} (exit {result.returncode}): {err}")
    try:
        out = json.loads(result.stdout.strip().splitlines()[-1])
        m = out["methods"]
        meas = {"prefill_ms": m["prefill"]["median_ms"], "prefill_p90_ms": m["prefill"]["p90_ms"],
                "decode_ms": m["decode"]["median_ms"], "decode_p90_ms": m["decode"]["p90_ms"],
                "prefill_min_ms": m["prefill"]["min_ms"], "decode_min_ms": m["decode"]["min_ms"],
                # one forward method serves both phases: its arena once, not summed
                "arena_bytes": out.get("arena_bytes") or sum((v.get("arena_bytes") or 0) for v in m.values())}
    except (json.JSONDecodeError, IndexError, KeyError, TypeError) as e:
        raise ProfilerError(f"runner output for {name} is not the expected JSON ({e})") from None
    # The runner's own VmHWM (peak RSS since exec). os.wait4's ru_maxrss of a child started
    # from this process is no use here: ru_maxrss survives exec, so it starts at the size of
    # the forking parent (measured: /bin/true "peaks" at ~236 MB when spawned from a Python
    # process holding torch). It is kept as an upper bound only.
    meas["peak_rss_bytes"] = out.get("peak_rss_bytes") or result.peak_rss_bytes or 0
    return meas


def measure_artifact(transport, profile: DeviceProfile, artifact: Path, runs: int = 30, warmup: int = 5,
                     timeout: float = RUNNER_TIMEOUT_S) -> dict:
    """Run one artifact on the device in its own process; its latency, arena and peak RSS."""
    result = transport.run(runner_command(profile, artifact, runs, warmup), timeout=timeout)
    meas = parse_runner_output(result, Path(artifact).name)
    meas["artifact_bytes"] = artifact_bytes(artifact)
    return meas


def artifact_bytes(path: Path) -> int:
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- micro-models --------------------------------------------------------------------------------
CALIBRATION_SEED = 1234  # not the seed validate_predictor draws its specs from
# Mixed full-depth micro-models. Cross-validated on the host (fp32, the fit as shipped): 6 gave
# 2.9% mean decode error, 12 gave 2.0%.
CALIBRATION_MODELS = 12


def micro_layouts(config, calibration: int = CALIBRATION_MODELS) -> list[tuple[str, tuple[str, ...]]]:
    """(name, per-layer granularities) of the micro-models.

    One layer of every granularity; the full model at its widest granularity; and
    ``calibration`` mixed models of the target depth (random per-layer granularities from a
    fixed seed). Why mostly mixed models: a layer's cost depends on the working set of the whole
    model (measured here: all-XL at 23 MiB falls off a cache cliff, and an additive fit to
    uniform deep models over-predicted every mixed spec by ~9%); mixed models put each width in
    the cache regime real specs see. The widest model is there so that the cache-spill term is
    measured up to the largest spec, never extrapolated past it.
    """
    import random

    names = config.granularity_names
    layouts = [(f"{g}x1", (g,)) for g in names]
    top = (names[-1],) * config.n_layers
    if config.n_layers > 1:
        layouts.append((f"{names[-1]}x{config.n_layers}", top))
    rng, seen = random.Random(CALIBRATION_SEED), set()
    possible = len(names) ** config.n_layers - 1  # every layout but the widest
    while len(seen) < min(calibration, possible) and config.n_layers > 1:
        layers = tuple(rng.choice(names) for _ in range(config.n_layers))
        if layers not in seen and layers != top:
            seen.add(layers)
            layouts.append((f"mix{len(seen)}-{''.join(layers)}", layers))
    return layouts


def micro_model(config, layers: tuple[str, ...], seed: int = 0):
    """A dense MatFormerLM with the given per-layer granularities (random weights: timing and
    memory do not depend on the values)."""
    import torch

    from edge.model import MatFormerLM

    widths = config.widths
    dense = dataclasses.replace(config, n_layers=len(layers), ffn_sizes=tuple(widths[g] for g in layers),
                                spec=tuple(layers))
    torch.manual_seed(seed)
    return MatFormerLM(dense).eval()


def export_artifact(model, profile: DeviceProfile, out_dir: Path, name: str) -> Path:
    """Export a dense model in the profile's backend and precision (through ``exporters``)."""
    exporters = importlib.import_module("exporters")
    kwargs = dict(context=profile.context, prefill_len=profile.limits.prompt_tokens)
    if hasattr(exporters, "export_model"):
        art = exporters.export_model(model, profile.backend, profile.precision, out_dir, name=name,
                                     parity=False, **kwargs)
        return Path(art.path)
    module = exporters.get_exporter(profile.backend) if hasattr(exporters, "get_exporter") else \
        importlib.import_module(f"exporters.{profile.backend}")
    out = Path(out_dir) / f"{name}{module.SUFFIX}"
    module.export(model, profile.precision, out, **kwargs)
    return out


# -- the table -----------------------------------------------------------------------------------
def table_header(profile: DeviceProfile, config, estimated: bool) -> dict:
    return {"schema": SCHEMA, "device": profile.name, "backend": profile.backend, "precision": profile.precision,
            "threads": profile.threads, "context": profile.context, "prompt_tokens": profile.limits.prompt_tokens,
            "estimated": estimated,
            "model": {"vocab_size": config.vocab_size, "d_model": config.d_model, "n_heads": config.n_heads,
                      "n_kv_heads": config.n_kv_heads, "d_ff": config.d_ff, "widths": dict(config.widths)}}


def library_versions(backend: str) -> dict:
    from importlib import metadata

    dists = {"executorch": ("executorch", "torch"), "litert": ("ai-edge-litert", "litert-torch"),
             "coreml": ("coremltools",)}.get(backend, ())
    out = {}
    for d in dists:
        try:
            out[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            pass
    return out


def export_all(profile: DeviceProfile, jobs: list, out_dir: Path, progress: bool = True) -> tuple[dict, list]:
    """Export ``jobs`` [(name, make_model)] in the profile's backend; -> ({name: path}, errors).

    A failed export is recorded (name, error) and the others carry on.
    """
    from tqdm import tqdm

    found, errors = {}, []
    for name, make_model in tqdm(jobs, desc=f"export ({profile.backend} {profile.precision})", disable=not progress):
        try:
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
               rounds: int, statistic: str = "median", calibration: int = CALIBRATION_MODELS) -> dict:
    """Fit micro-model measurements ({name: measurement}) into a cost table with provenance."""
    layouts = dict(micro_layouts(config, calibration))
    micro = [{"name": n, "layers": list(layouts[n]), **m} for n, m in measured.items() if n in layouts]
    fixed, layers, spill = fit_costs(micro, config.granularity_names, statistic)
    table = table_header(profile, config, estimated=False)
    table.update(fixed=fixed, layers=layers, **({"spill": spill} if spill else {}), micro=micro, errors=errors,
                 provenance={**transport.describe(), "device": profile.name, "libraries": library_versions(profile.backend),
                             "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                             "runs": runs, "warmup": warmup, "rounds": rounds, "statistic": statistic,
                             "runner": "apps/cpp matedge_runner" if profile.backend == "executorch" else "edge/runner_litert.py"})
    return table


def micro_jobs(config, calibration: int = CALIBRATION_MODELS) -> list:
    """Export jobs [(name, make_model)] for every micro-model."""
    return [(name, lambda layers=layers: micro_model(config, layers)) for name, layers in micro_layouts(config, calibration)]


def measure_table(profile: DeviceProfile, config, *, runs: int = 100, warmup: int = 10, rounds: int = 5,
                  statistic: str = "median", transport=None, progress: bool = True, work_dir: Path | None = None) -> dict:
    """Export and run every micro-model on the device; fit and return the cost table.

    Failed micro-models are listed under ``errors``; the fit needs at least one micro-model per
    granularity plus one more.
    """
    profile = fit_context(profile, config)
    transport = transport or get_transport(profile.transport)
    transport.check()  # an unreachable device fails now, not after minutes of exports
    with tempfile.TemporaryDirectory(prefix="matedge-profile-", dir=work_dir) as tmp:
        found, errors = export_all(profile, micro_jobs(config), Path(tmp), progress)
        measured, run_errors = measure_all(transport, profile, found, runs=runs, warmup=warmup, rounds=rounds,
                                           progress=progress)
    return table_from(profile, config, transport, measured, errors + run_errors, runs=runs, warmup=warmup, rounds=rounds,
                      statistic=statistic)


def fit_context(profile: DeviceProfile, config) -> DeviceProfile:
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


# -- the roofline estimate (transport "none") ------------------------------------------------------
BYTES_PER_WEIGHT = {"fp32": 4.0, "fp16": 2.0, "int8": 1.0, "8da4w": 0.5, "pal4": 0.5}


def estimate_table(profile: DeviceProfile, config) -> dict:
    """Roofline costs from ``[hardware]``: time = max(bytes / bandwidth, FLOPs / GEMM rate)."""
    profile = fit_context(profile, config)
    hw, ctx, T = profile.hardware, profile.context, profile.limits.prompt_tokens
    wbytes = BYTES_PER_WEIGHT.get(profile.precision, 4.0)
    act = 2 if profile.precision == "fp16" else 4  # KV cache element size
    d, kv = config.d_model, config.n_kv_heads * config.head_dim
    bw, rate = hw.memory_bandwidth_gbs * 1e9, hw.gemm_gflops * 1e9

    def part(params: float, extra_flops_per_token: float, kv_bytes: float) -> dict:
        w = params * wbytes
        decode = max((w + kv_bytes) / bw, (2 * params + extra_flops_per_token) / rate) * 1e3
        prefill = max(w / bw, T * (2 * params + extra_flops_per_token) / rate) * 1e3
        return {"prefill_ms": prefill, "prefill_p90_ms": prefill * 1.1, "decode_ms": decode,
                "decode_p90_ms": decode * 1.1, "weight_bytes": w, "arena_bytes": kv_bytes + 4 * act * d * T,
                "runtime_bytes": 0.0}

    attn_params = 2 * d * d + 2 * d * kv
    layers = {g: part(attn_params + 3 * d * m + 2 * d, 4 * d * ctx, 2 * kv * ctx * act)
              for g, m in config.widths.items()}
    fixed = part(config.vocab_size * d + d, 0.0, 0.0)
    fixed["runtime_bytes"] = hw.runtime_overhead_mb * 2**20
    table = table_header(profile, config, estimated=True)
    table.update(fixed=fixed, layers=layers, provenance={
        "device": profile.name, "transport": "none", "cpu_model": hw.cpu or "unknown",
        "libraries": {}, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "runs": 0, "warmup": 0, "runner": "roofline estimate from the profile's [hardware] facts"})
    return table


# -- chart ---------------------------------------------------------------------------------------
def plot_table(table: dict, path: Path) -> Path:
    """PNG: per-granularity latency (prefill, decode) and memory (weights, arena, runtime) per layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table["layers"])
    lay = [table["layers"][g] for g in names]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, key, label in ((axes[0], "prefill_ms", f"prefill of {table['prompt_tokens']} tokens"),
                           (axes[1], "decode_ms", "decode, per token")):
        ax.bar(names, [c[key] for c in lay], color="#4c72b0")
        spread = [max(0.0, c[key.replace("_ms", "_p90_ms")] - c[key]) for c in lay]  # up to p90
        ax.errorbar(names, [c[key] for c in lay], yerr=[[0.0] * len(lay), spread], fmt="none", ecolor="black", capsize=3)
        terms = table.get("spill", {}).get(key, [])
        extra = "".join(f"; +{t['ms_per_mib']:.3f} ms/MiB past {t['above_bytes'] / 2**20:.1f} MiB" for t in terms)
        ax.set_title(f"{label} (ms / layer)\nfixed part {table['fixed'][key]:.3f} ms{extra}", fontsize=10)
    bottom = [0.0] * len(lay)
    for key, color in (("weight_bytes", "#4c72b0"), ("arena_bytes", "#55a868"), ("runtime_bytes", "#c44e52")):
        vals = [c[key] / 2**20 for c in lay]
        axes[2].bar(names, vals, bottom=bottom, color=color, label=key.replace("_bytes", ""))
        bottom = [b + v for b, v in zip(bottom, vals)]
    axes[2].set_title("memory (MiB / layer)", fontsize=10)
    axes[2].legend(fontsize=8)
    tag = " [estimated]" if table["estimated"] else ""
    fig.suptitle(f"{table['device']}: {table['backend']} {table['precision']}, {table['threads']} thread(s), "
                 f"context {table['context']}{tag}")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


# -- end-to-end check of the predictor -------------------------------------------------------------
def spec_jobs(model, specs: list) -> list:
    """Export jobs [(name, make_model)] for the dense submodels of ``specs`` (name = the spec)."""
    from edge.slicing import slice_model
    from edge.spec import format_spec

    return [(f"spec{i}-{format_spec(s).replace(',', '')}", lambda s=s: slice_model(model, s)) for i, s in enumerate(specs)]


def compare(table: dict, specs: list, jobs: list, measured: dict, errors: list) -> dict:
    """Predicted vs measured for every spec that ran: rows, and mean / max |% error| per metric
    (measured latency uses the statistic the table was fitted with, median or min)."""
    from edge.predictor import predict
    from edge.spec import format_spec

    rows, stat = [], table_statistic(table)
    for spec, (name, _) in zip(specs, jobs):
        if name not in measured:
            continue
        meas, pred = measured[name], predict(table, spec)
        row = {"spec": format_spec(spec)}
        for key, m, p in (("decode_ms", observed(meas, "decode_ms", stat), pred["decode_ms"]),
                          ("prefill_ms", observed(meas, "prefill_ms", stat), pred["prefill_ms"]),
                          ("memory_bytes", meas["peak_rss_bytes"], pred["total_bytes"])):
            row[key] = {"predicted": p, "measured": m, "error_pct": 100.0 * (p - m) / m if m else float("nan")}
        rows.append(row)
    summary = {key: {"mean_abs_pct": sum(abs(r[key]["error_pct"]) for r in rows) / len(rows),
                     "max_abs_pct": max(abs(r[key]["error_pct"]) for r in rows)}
               for key in ("decode_ms", "prefill_ms", "memory_bytes")} if rows else {}
    return {"device": table["device"], "precision": table["precision"], "k": len(specs), "rows": rows,
            "summary": summary, "errors": errors}


def validate_predictor(profile: DeviceProfile, model, table: dict, *, k: int = 20, seed: int = 0, runs: int = 100,
                       warmup: int = 10, rounds: int = 5, transport=None, progress: bool = True) -> dict:
    """Measure ``k`` random specs of ``model`` end to end on the device against the prediction.

    Returns {"rows": [per spec: predicted / measured decode ms, prefill ms, peak memory and %
    errors], "summary": {metric: {"mean_abs_pct", "max_abs_pct"}}, "errors": [...]}.
    """
    import random

    from edge.predictor import check_model
    from edge.spec import random_spec

    check_model(table, model.config)
    profile = fit_context(profile, model.config)
    transport = transport or get_transport(profile.transport)
    transport.check()
    rng = random.Random(seed)
    specs = [random_spec(model.config, rng) for _ in range(k)]
    jobs = spec_jobs(model, specs)
    with tempfile.TemporaryDirectory(prefix="matedge-validate-") as tmp:
        found, errors = export_all(profile, jobs, Path(tmp), progress)
        measured, run_errors = measure_all(transport, profile, found, runs=runs, warmup=warmup, rounds=rounds,
                                           progress=progress)
    result = compare(table, specs, jobs, measured, errors + run_errors)
    result["seed"] = seed
    return result
