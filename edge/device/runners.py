"""Runner processes: the command that times an artifact on a device, and what it reports.

Runners never import torch (torch + executorch.runtime alone is ~355 MB RSS): ExecuTorch
programs run in ``apps/cpp``'s ``matedge_runner`` (edge.device.cpp_runner), LiteRT files in
``edge/device/runner_litert.py`` (imports only ai-edge-litert). Which runner a backend uses is
its registry record's ``runner`` field. Both print one JSON object of the same shape.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edge.device.profiles import DeviceProfile
from edge.device.transports import parse_transport
from edge.errors import MatEdgeError
from exporters.backends import get_backend
from exporters.base import file_size

LITERT_RUNNER = Path(__file__).resolve().parent / "runner_litert.py"
RUNNER_TIMEOUT_S = 120.0
# What a cost table's provenance says ran the micro-models, per runner of exporters.backends.
RUNNER_LABELS = {"matedge_runner": "apps/cpp matedge_runner", "runner_litert": "edge/device/runner_litert.py"}


class ProfilerError(MatEdgeError):
    """Profiling cannot proceed (no runner for the backend, build failed, a runner crashed)."""


def verify_args(artifact: Path) -> list:
    """The runner checks the artifact's size and sha256 against the metadata JSON that
    ``matedge export`` wrote beside it (shipped with it); a file without one runs unverified."""
    meta = Path(artifact).with_suffix(".json")
    return ["--meta", meta] if meta.is_file() else ["--no-verify"]


def runner_command(profile: DeviceProfile, artifact: Path, runs: int, warmup: int) -> list:
    """The command a transport runs: files to ship are Paths, literal arguments are strings."""
    args = ["--model", Path(artifact), "--methods", "prefill,decode", "--runs", str(runs),
            "--warmup", str(warmup), "--threads", str(profile.threads), *verify_args(artifact)]
    runner = get_backend(profile.backend).runner
    if runner == "matedge_runner":
        from edge.device.cpp_runner import ensure_cpp_runner

        # its "prefill" phase: forward of the prompt at position 0 (the .pte's one method)
        return [ensure_cpp_runner(), *args, "--prompt-tokens", str(profile.limits.prompt_tokens)]
    if runner == "runner_litert":
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
    # A program with ExecuTorch's LLM custom ops makes the runner load the wheel's kernels
    # library, which drags libtorch in (~110 MB resident). A device runtime links the kernels
    # themselves (ExecuTorch's LLM apps do), so the model's cost leaves that library out.
    if out.get("llm_ops_bytes"):
        meas["llm_ops_bytes"] = out["llm_ops_bytes"]
        meas["peak_rss_bytes"] = max(0, meas["peak_rss_bytes"] - out["llm_ops_bytes"])
    return meas


def measure_artifact(transport, profile: DeviceProfile, artifact: Path, runs: int = 30, warmup: int = 5,
                     timeout: float = RUNNER_TIMEOUT_S) -> dict:
    """Run one artifact on the device in its own process; its latency, arena and peak RSS."""
    result = transport.run(runner_command(profile, artifact, runs, warmup), timeout=timeout)
    meas = parse_runner_output(result, Path(artifact).name)
    meas["artifact_bytes"] = file_size(artifact)  # the file, or every file of a package folder
    return meas
