"""matedge bundle on real builds of a tiny model: contents, schema, hashes, refusals, atomicity."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from edge.bundle.make import SCHEMA_FILE
from edge.bundle.selection import choose
from edge.fsguard import MARKER
from edge.cli import main

ROOT = Path(__file__).resolve().parents[2]


# Every test here uses tiny_builds: a model trained for 150 steps and two builds with real exports.
# They share them with test_native and test_web: one unit of work for `make test` (test_groups in
# pyproject.toml), so one worker makes them once.
pytestmark = [pytest.mark.slow, pytest.mark.integration]


def bundle(build_root: Path, *args: str) -> int:
    return main(["bundle", "--build-dir", str(build_root), *args])


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_web_bundle_contents_match_schema_and_files(tiny_builds, tmp_path):
    ckpt, build = tiny_builds
    out = tmp_path / "web"
    assert bundle(build, "--device", "webdev", "--app", "web", "--out", str(out)) == 0
    m = json.loads((out / "manifest.json").read_text())
    jsonschema.validate(m, json.loads(SCHEMA_FILE.read_text()))
    assert m["schema_version"] == 1 and m["app"] == "web" and m["devices"] == ["webdev"]
    # every file but the manifest (and matedge's ownership marker) is listed with its real size and
    # hash, and nothing else is
    assert set(m["files"]) == {p.name for p in out.iterdir()} - {"manifest.json", MARKER}
    for name, f in m["files"].items():
        assert (out / name).stat().st_size == f["bytes"] and sha(out / name) == f["sha256"]
    build_m = json.loads((build / "webdev" / "manifest.json").read_text())
    roles = {v["role"]: v for v in m["variants"]}
    assert set(roles) == set(build_m["artifacts"]) == {"model", "fallback"}
    for role, v in roles.items():
        assert v["file"].endswith(".tflite") and v["sha256"] == m["files"][v["file"]]["sha256"]
        assert v["sha256"] == build_m["artifacts"][role]["sha256"]  # the bytes the build verified
        assert v["predicted_from"] == "estimated" and v["measured"] is None
        assert v["limits"]["memory_mb"] == build_m["limits"]["memory_mb"]
        assert "decode" in v["entry_points"] and any(n.startswith("prefill") for n in v["entry_points"])
        for kind, name in v.get("extra_files", {}).items():  # e.g. the .litertlm beside the .tflite
            assert name in m["files"] and name.startswith(f"webdev.{role}.")
    assert roles["model"]["spec"] == build_m["spec"] and roles["fallback"]["spec"] == build_m["fallback"]["spec"]
    assert roles["fallback"]["predicted"]["memory_mb"] < roles["model"]["predicted"]["memory_mb"]
    # the tokenizer travels byte-exact from the checkpoint
    assert sha(out / "tokenizer.json") == sha(ckpt / "tokenizer.json")
    assert m["generation"]["stop_ids"] == m["tokenizer"]["eos_ids"]
    # the rule picks the chosen spec where memory is plenty, the fallback where it is not
    assert choose(m, {"available_memory_mb": 1e6})["variant"] == "webdev.model"
    fallback_mem = roles["fallback"]["predicted"]["memory_mb"]
    assert choose(m, {"available_memory_mb": fallback_mem})["variant"] == "webdev.fallback"


def test_all_makes_one_bundle_per_app_and_rebundles_in_place(tiny_builds, tmp_path, capsys):
    _, build = tiny_builds
    out = tmp_path / "bundles"
    assert bundle(build, "--all", "--out", str(out)) == 0
    web = json.loads((out / "web" / "manifest.json").read_text())
    native = json.loads((out / "native" / "manifest.json").read_text())
    assert web["devices"] == ["webdev"] and native["devices"] == ["nativedev"]
    assert [v["file"] for v in native["variants"]] == ["nativedev.model.pte"]  # memory not tight: no fallback
    first = (out / "web" / "manifest.json").read_text()
    assert bundle(build, "--all", "--out", str(out)) == 0  # a bundle this tool wrote is replaced
    assert json.loads((out / "web" / "manifest.json").read_text())["files"] == json.loads(first)["files"]
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temporary folders left


def refused(capsys, build, *args) -> str:
    assert bundle(build, *args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_refusals_are_one_line_and_write_nothing(tiny_builds, tmp_path, capsys):
    _, build = tiny_builds
    out = str(tmp_path / "b")
    assert "no build for device 'nope'" in refused(capsys, build, "--device", "nope", "--app", "web", "--out", out)
    assert "runs litert" in refused(capsys, build, "--device", "nativedev", "--app", "web", "--out", out)
    # a folder the tool did not write is never overwritten
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert "not a bundle written by" in refused(capsys, build, "--device", "webdev", "--app", "web", "--out", str(mine))
    assert (mine / "notes.txt").read_text() == "keep me" and not Path(out).exists()


def copy_build(build: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "build"
    shutil.copytree(build / "webdev", dst / "webdev")
    return dst


def test_tampered_missing_or_failed_parity_builds_are_refused(tiny_builds, tmp_path, capsys):
    _, build = tiny_builds
    out = str(tmp_path / "b")
    tampered = copy_build(build, tmp_path / "t")
    art = tampered / "webdev" / "model.tflite"
    data = bytearray(art.read_bytes())
    data[len(data) // 2] ^= 0xFF
    art.unlink()  # the build hard-links its cache: write a new file, never into the shared one
    art.write_bytes(bytes(data))
    assert "sha256" in refused(capsys, tampered, "--device", "webdev", "--app", "web", "--out", out)

    missing = copy_build(build, tmp_path / "m")
    (missing / "webdev" / "fallback.tflite").unlink()
    assert "is missing" in refused(capsys, missing, "--device", "webdev", "--app", "web", "--out", out)

    failed = copy_build(build, tmp_path / "f")
    path = failed / "webdev" / "manifest.json"
    m = json.loads(path.read_text())
    m["artifacts"]["model"]["parity"]["passed"] = False
    path.write_text(json.dumps(m))
    assert "parity" in refused(capsys, failed, "--device", "webdev", "--app", "web", "--out", out)
    assert not Path(out).exists()


def test_cli_runs_as_a_program(tiny_builds, tmp_path):
    """The console entry point, as a user runs it: exit code 2 and one line on stderr."""
    _, build = tiny_builds
    r = subprocess.run([sys.executable, "-m", "edge", "bundle", "--build-dir", str(build), "--device", "webdev",
                        "--app", "native", "--out", str(tmp_path / "x")], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "runs executorch" in r.stderr


def test_elastic_artifact_travels_with_its_members(elastic_builds, tmp_path):
    """A build with an elastic artifact bundles it under `elastic` (members, default, entry points,
    the file's hash), not as a variant; a tampered elastic file is refused like any artifact."""
    _, build, entries = elastic_builds
    entry = entries["webdev"]
    root = tmp_path / "build"
    shutil.copytree(build, root)  # this test tampers with a file
    out = tmp_path / "web"
    assert bundle(root, "--device", "webdev", "--app", "web", "--out", str(out)) == 0
    b = json.loads((out / "manifest.json").read_text())
    jsonschema.validate(b, json.loads(SCHEMA_FILE.read_text()))
    [el] = b["elastic"]
    assert el["file"] == "webdev.elastic.tflite" and el["members"] == {"S": "S", "XL": "XL"}  # format_spec
    assert el["default"] == "XL" and el["sha256"] == sha(out / el["file"]) == entry["sha256"]
    assert el["order"] == ["S", "XL"]  # cheapest first, for readers whose JSON objects lose key order
    # each member's prefill, decode and attention window (context 64: decode_<m>_w32)
    assert {"prefill_S", "decode_S", "decode_S_w32", "prefill_XL", "decode_XL", "decode_XL_w32"} \
        == set(el["entry_points"])
    assert [t["name"] for t in el["entry_points"]["prefill_S"]["outputs"]][0] == "logits"
    assert {v["role"] for v in b["variants"]} == {"model", "fallback"}  # not a variant of its own
    with open(root / "webdev" / entry["file"], "ab") as f:  # tampered after the build
        f.write(b"\0")
    assert bundle(root, "--device", "webdev", "--app", "web", "--out", str(tmp_path / "web2")) == 2
    assert not (tmp_path / "web2").exists()
