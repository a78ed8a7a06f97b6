"""The native app (apps/native matedge_chat, ExecuTorch C++ runtime + pytorch/tokenizers) on a
real bundle of a tiny model's ExecuTorch build: eager PyTorch's greedy tokens, refusals."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.cli import main

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "def main("

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.skipif(not shutil.which("cmake") or not Path("/usr/include/nlohmann/json.hpp").exists(),
                                 reason="needs cmake and nlohmann-json3-dev (.ci/run installs them)")]


@pytest.fixture(scope="module")
def native_bundle(tiny_builds, tmp_path_factory):
    _, build = tiny_builds
    out = tmp_path_factory.mktemp("native") / "bundle"
    assert main(["bundle", "--build-dir", str(build), "--device", "nativedev", "--app", "native", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def chat():
    """apps/native/build/matedge_chat, built as bench/web_app.py builds it."""
    sys.path.insert(0, str(ROOT / "bench"))
    from web_app import build_native_app

    return build_native_app()


def run(chat: Path, bundle: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(chat), str(bundle), *args], capture_output=True, text=True, timeout=300)


def test_native_app_generates_eager_tokens(tiny_builds, native_bundle, chat):
    from edge.checkpoint import load_model
    from edge.generate import greedy_generate
    from edge.spec import parse_spec
    from edge.tokenizer import load_tokenizer

    ckpt, _ = tiny_builds
    r = run(chat, native_bundle, "--prompt", PROMPT, "--json", "--max-new-tokens", "24")
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["prompt_ids"] == load_tokenizer(native_bundle).encode(PROMPT)  # pytorch/tokenizers = HF tokenizers
    model = load_model(ckpt)
    want = greedy_generate(model, report["prompt_ids"], len(report["tokens"]), parse_spec(report["spec"], model.config))
    assert report["tokens"] == want
    assert report["reason"].startswith(report["variant"]) and report["facts"]["available_memory_mb"] > 0
    assert report["decode_ms_per_token"] > 0


def test_native_app_refuses_a_changed_file(native_bundle, chat, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(native_bundle, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    target = bad / manifest["variants"][0]["file"]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    r = run(chat, bad, "--prompt", PROMPT)
    assert r.returncode == 2 and f"refused {target.name}" in r.stderr and r.stdout == ""
    r = run(chat, tmp_path / "nowhere", "--prompt", PROMPT)
    assert r.returncode == 2 and "manifest.json" in r.stderr


@pytest.mark.parametrize("member, target", [("S", None), ("auto", "0.000001")])
def test_native_app_runs_the_elastic_file_and_switches_members(elastic_builds, chat, tmp_path, member, target):
    """With an elastic .pte in the bundle the app runs it: a pinned member, or the controller,
    which under an unreachable target steps from XL down to S while generating; the tokens equal
    eager's for the member schedule the app reports (one KV cache shared by the members)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_web import elastic_tokens

    ckpt, build, _ = elastic_builds
    out = tmp_path / "bundle"
    assert main(["bundle", "--build-dir", str(build), "--device", "nativedev", "--app", "native", "--out", str(out)]) == 0
    args = ["--prompt", PROMPT, "--json", "--max-new-tokens", "24", "--member", member] + (["--target", target] if target else [])
    r = run(chat, out, *args)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    used = report["members_used"]
    assert report["elastic"] == "nativedev.elastic" and len(used) == len(report["tokens"]) >= 16
    if member == "S":
        assert set(used) == {"S"}
    else:
        assert used[0] == "XL" and used[-1] == "S" and "XL" in used[1:4], used
    assert report["tokens"] == elastic_tokens(ckpt, report["prompt_ids"], used, 64)[:len(used)]
    bad = run(chat, out, "--prompt", PROMPT, "--member", "Q")
    assert bad.returncode == 2 and "members are S, XL (or auto)" in bad.stderr


def test_native_app_speculative_decoding_gives_the_verifiers_tokens(elastic_builds, chat, tmp_path):
    """--speculative K: S drafts K tokens per round, the pinned XL verifies them in one call over
    the same KV cache; the tokens equal XL's plain greedy run, and the report counts the rounds."""
    _, build, _ = elastic_builds
    out = tmp_path / "bundle"
    assert main(["bundle", "--build-dir", str(build), "--device", "nativedev", "--app", "native", "--out", str(out)]) == 0
    plain = json.loads(run(chat, out, "--prompt", PROMPT, "--json", "--max-new-tokens", "30", "--member", "XL",
                           "--threads", "1").stdout.strip().splitlines()[-1])
    for k in (1, 3):
        r = run(chat, out, "--prompt", PROMPT, "--json", "--max-new-tokens", "30", "--member", "XL",
                "--speculative", str(k))
        assert r.returncode == 0, r.stderr[-2000:]
        report = json.loads(r.stdout.strip().splitlines()[-1])
        spec = report["speculative"]
        assert report["tokens"] == plain["tokens"] and len(report["tokens"]) >= 16
        assert (spec["k"], spec["draft"], spec["verify"]) == (k, "S", "XL")
        assert spec["rounds"] >= (len(report["tokens"]) - 1) / (k + 1) and spec["accepted"] <= spec["drafted"]
        assert spec["drafted"] <= k * spec["rounds"] and report["members_used"] is None
    for args, said in [(["--member", "S"], "S is the cheapest member"), (["--member", "auto", "--target", "1"],
                       "pin it with --member NAME"), (["--member", "XL", "--speculative", "0"], "expected a positive integer"),
                       (["--member", "XL", "--threads", "two"], "--threads two: expected a positive integer")]:
        bad = run(chat, out, "--prompt", PROMPT, *(["--speculative", "2"] if "--speculative" not in args else []), *args)
        assert bad.returncode == 2 and said in bad.stderr and bad.stdout == "", bad.stderr
