"""matedge build on the tiny model: real exports, real parity checks, real cache and failures."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.plan.build import BuildSettings, build_all
from edge.device.profiles import load_profile
from edge.plan.planner import SearchSettings

ROOT = Path(__file__).resolve().parents[3]

def settings(ckpt, out_root, **kw):
    return BuildSettings(checkpoint=ckpt, out_root=out_root, eval_tokens=1024, seq_len=32, runs=5, warmup=1,
                         search=SearchSettings(generations=2, population=6), progress=False, **kw)


@pytest.mark.slow
@pytest.mark.integration
def test_build_estimated_device_then_cache_hit(ckpt, tmp_path, write_profile):
    prof = load_profile(write_profile(tmp_path, "board"))
    logs: list[str] = []
    [res] = build_all([prof], settings(ckpt, tmp_path / "build"), log=logs.append)
    assert res.ok, res.error
    folder = tmp_path / "build" / "board"
    m = json.loads((folder / "manifest.json").read_text())
    assert m["estimated"] is True and m["cost_table"].startswith("estimated")
    assert (folder / m["artifacts"]["model"]["file"]).stat().st_size == m["artifacts"]["model"]["bytes"]
    files = m["artifacts"]["model"]["files"]  # every file of the artifact, the tokenizer among them
    assert {"model", "tokenizer", "tokenizer_config"} <= set(files) and all((folder / f).is_file() for f in files.values())
    assert m["tokenizer"]["file"] == "tokenizer.json" and m["tokenizer"]["eos_ids"] == [258]
    for png in ("frontier.png", "costs.png"):
        assert (folder / png).read_bytes()[:4] == b"\x89PNG"
    assert "ESTIMATED" in (folder / "report.md").read_text()
    # the planner is never worse than the best uniform granularity that fits
    assert m["best_uniform"] is None or m["val_loss"] <= m["best_uniform"]["val_loss"]
    assert all(m["predicted"][k] <= v for k, v in m["limits"].items())
    assert any("exporting model" in line for line in logs)
    # the same build again: nothing is exported, the artifact is byte-identical
    logs.clear()
    [again] = build_all([prof], settings(ckpt, tmp_path / "build"), log=logs.append)
    assert again.ok and not any("exporting" in line for line in logs)
    assert any("cached artifact" in line for line in logs)
    assert again.manifest["artifacts"]["model"]["sha256"] == m["artifacts"]["model"]["sha256"]
    assert not [p for p in (tmp_path / "build").iterdir() if p.name.startswith(".")]


@pytest.mark.slow
@pytest.mark.integration
def test_infeasible_limits_fail_cleanly_and_others_build(ckpt, tmp_path, write_profile):
    bad = load_profile(write_profile(tmp_path, "watch", memory_mb=0.01))
    good = load_profile(write_profile(tmp_path, "board"))
    results = build_all([bad, good], settings(ckpt, tmp_path / "build"), log=lambda *_: None)
    assert not results[0].ok and results[0].bad_input
    assert "cheapest spec S" in results[0].error and "memory_mb" in results[0].error
    assert not (tmp_path / "build" / "watch").exists()
    assert results[1].ok and (tmp_path / "build" / "board" / "manifest.json").exists()


@pytest.mark.slow
@pytest.mark.integration
def test_cli_exit_codes_and_summary(ckpt, tmp_path, write_profile):
    bad = write_profile(tmp_path, "watch", memory_mb=0.01)
    r = subprocess.run([sys.executable, "-m", "edge", "build", "--device", str(bad), "--checkpoint", str(ckpt),
                        "--out", str(tmp_path / "b"), "--eval-tokens", "1024", "--quiet"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 2, r.stderr
    assert "FAILED watch" in r.stdout and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "edge", "build", "--device", "no-such-device"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and "unknown device profile 'no-such-device'" in r.stderr


@pytest.mark.slow
@pytest.mark.integration
def test_interrupted_build_leaves_no_partial_folder(ckpt, tmp_path, write_profile):
    prof = write_profile(tmp_path, "board", backend="litert")
    proc = subprocess.Popen([sys.executable, "-m", "edge", "build", "--device", str(prof), "--checkpoint", str(ckpt),
                             "--out", str(tmp_path / "b"), "--eval-tokens", "1024", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    seen = []
    for line in proc.stdout:  # interrupt in the middle of the export
        seen.append(line)
        if "exporting model" in line:
            time.sleep(1.0)
            proc.send_signal(signal.SIGINT)
            break
    proc.communicate(timeout=300)
    assert proc.returncode != 0, "".join(seen)
    assert not (tmp_path / "b" / "board").exists()
    leftovers = [p for p in (tmp_path / "b").rglob("*") if ".tmp-" in p.name]
    assert not leftovers, leftovers


@pytest.mark.slow
@pytest.mark.integration
def test_changed_profile_rebuilds_only_what_changed(ckpt, tmp_path, write_profile):
    logs: list[str] = []
    first = load_profile(write_profile(tmp_path, "board", decode_ms=1.0))
    [a] = build_all([first], settings(ckpt, tmp_path / "build"), log=logs.append)
    assert a.manifest["predicted"]["memory_mb"] < 50  # memory is not the binding limit here
    # a new description and a looser memory limit: same spec, nothing exported again
    edited = load_profile(write_profile(tmp_path, "board", memory_mb=60, description="renamed board"))
    logs.clear()
    [b] = build_all([edited], settings(ckpt, tmp_path / "build"), log=logs.append)
    assert b.manifest["spec"] == a.manifest["spec"] and b.manifest["description"] == "renamed board"
    assert not any("exporting" in line for line in logs)
    # another precision: a new cost table and a new export
    int8 = load_profile(write_profile(tmp_path, "board", precision="int8"))
    logs.clear()
    [c] = build_all([int8], settings(ckpt, tmp_path / "build"), log=logs.append)
    assert c.ok and any("exporting model" in line for line in logs)
    assert c.manifest["artifacts"]["model"]["cache_key"] != b.manifest["artifacts"]["model"]["cache_key"]


def test_a_measured_limit_overrun_warns_with_what_to_do(capsys):
    """Predicted under the limit, measured over it: one warning per exceeded limit, none otherwise."""
    from edge.plan.manifest import warn_if_over

    manifest = {"device": "board", "limits": {"decode_ms_per_token": 0.45, "memory_mb": 60},
                "predicted": {"decode_ms_per_token": 0.41, "memory_mb": 50.0},
                "measured": {"decode_ms_per_token": 0.53, "memory_mb": 49.0},
                "measured_within_limits": {"decode_ms_per_token": False, "memory_mb": True}}
    warn_if_over(manifest)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "decode_ms_per_token 0.530 exceeds the limit 0.45" in err[0]
    assert "matedge profile --device board" in err[0]
    warn_if_over({**manifest, "measured_within_limits": None})  # not measured (estimated device)
    assert capsys.readouterr().err == ""
