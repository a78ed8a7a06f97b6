"""The runners refuse what they must not load: bad numbers, missing or mismatching metadata,
non-files, and mutated artifacts (fuzzing). Never a signal; every refusal is one line, exit 2."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "hostile"))

import hostile_runners as hr  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.integration]
BACKENDS = ["executorch", "litert"]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    pytest.importorskip("executorch")
    pytest.importorskip("ai_edge_litert")
    if shutil.which("cmake") is None:
        pytest.skip("cmake not installed (.ci/run installs it)")
    arts = hr.export_artifacts(tmp_path_factory.mktemp("arts"))
    hr.runner_argv("executorch")  # build the native runner once
    return arts


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_verified_artifact_runs(artifacts, backend):
    out = hr.run(backend, ["--model", artifacts[backend], "--runs", "2", "--warmup", "0", "--threads", "1"])
    assert out.verdict == "clean" and out.code == 0, out.line


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["threads-overflow", "threads-negative", "threads-huge", "runs-zero", "runs-text",
                                  "warmup-huge", "meta-wrong-size", "meta-wrong-sha", "meta-no-fields", "meta-is-dir",
                                  "meta-missing", "model-is-dir", "model-is-fifo", "model-missing"])
def test_bad_arguments_and_metadata_are_one_line_exit_2(artifacts, backend, name, tmp_path):
    args = hr.bad_argument_cases(backend, artifacts[backend], tmp_path)[name]
    out = hr.run(backend, args, timeout=60)
    assert out.verdict == "clean" and out.code == 2, f"{name}: exit {out.code}: {out.line}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_fuzz_mutated_artifacts_are_refused_before_loading(artifacts, backend, tmp_path):
    counts = hr.fuzz(backend, artifacts[backend], tmp_path, n=25, resign=False)
    assert counts == {"clean": 25, "signal": 0, "wrong": 0, "ran": 0, "crash_reported": 0}, counts


@pytest.mark.parametrize("backend", BACKENDS)
def test_fuzz_hostile_artifacts_with_matching_metadata_never_kill_the_runner(artifacts, backend, tmp_path):
    """The checksum cannot stop a file whose metadata was rewritten to match: then the runtime's
    own verification must fail cleanly, or the program runs; never a signal."""
    counts = hr.fuzz(backend, artifacts[backend], tmp_path, n=40, resign=True, seed=1)
    assert counts["signal"] == 0 and counts["wrong"] == 0, counts


def test_the_profiler_ships_the_metadata_and_the_runner_checks_it(artifacts, tmp_path):
    import dataclasses

    from edge.device.runners import ProfilerError, measure_artifact
    from edge.device.profiles import load_profile
    from edge.device.transports import LocalTransport

    art = tmp_path / "m.pte"
    shutil.copy(artifacts["executorch"], art)
    shutil.copy(artifacts["executorch"].with_suffix(".json"), art.with_suffix(".json"))
    host = load_profile("host")
    host = dataclasses.replace(host, limits=dataclasses.replace(host.limits, prompt_tokens=4))  # the artifact's context is 16
    meas = measure_artifact(LocalTransport(), host, art, runs=2, warmup=0)
    assert meas["decode_ms"] > 0
    data = bytearray(art.read_bytes())
    data[len(data) // 2] ^= 0xFF
    art.write_bytes(bytes(data))
    with pytest.raises(ProfilerError, match="does not match the sha256"):
        measure_artifact(LocalTransport(), host, art, runs=1, warmup=0)
