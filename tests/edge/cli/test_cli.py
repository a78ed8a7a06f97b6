"""The CLI end to end: real subprocesses, exit codes, one-line errors, nothing half-written."""

import subprocess
import sys
from pathlib import Path

import pytest

from edge.checkpoint import save_model
from edge.cli import main

ROOT = Path(__file__).resolve().parents[3]


def matedge(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "edge", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture
def ckpt(tiny_model, tmp_path):
    return save_model(tiny_model, tmp_path / "ckpt", {"preset": "tiny"})


@pytest.mark.slow  # real `python -m edge` subprocesses
def test_help_lists_commands():
    r = matedge("--help")
    assert r.returncode == 0
    for cmd in ("train", "info", "eval", "slice"):
        assert cmd in r.stdout


@pytest.mark.slow
def test_train_info_eval_slice(tmp_path):
    out = tmp_path / "run"
    r = matedge("train", "--preset", "tiny", "--steps", "3", "--batch-size", "4", "--seq-len", "32",
                "--eval-every", "3", "--quiet", "--out", out)
    assert r.returncode == 0, r.stderr
    assert (out / "model.safetensors").exists()
    r = matedge("info", out, "--eval-tokens", "1024")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [ln.split()[0] for ln in lines[-4:]] == ["S", "M", "L", "XL"]
    r = matedge("eval", out, "--spec", "S,M,L,XL", "--eval-tokens", "1024")
    assert r.returncode == 0 and "S,M,L,XL" in r.stdout
    r = matedge("slice", out, "--spec", "S*2,XL*2", "--out", tmp_path / "dense")
    assert r.returncode == 0 and "[32, 32, 256, 256]" in r.stdout


def _one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr)
    err = r.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err


@pytest.mark.slow  # real `python -m edge` subprocesses
def test_bad_spec(ckpt, tmp_path):
    _one_line_error(matedge("eval", ckpt, "--spec", "S,M"), "2 layers", "model has 4")
    _one_line_error(matedge("slice", ckpt, "--spec", "XXL", "--out", tmp_path / "o"), "unknown granularity")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow  # real `python -m edge` subprocesses
def test_missing_and_corrupt_checkpoint(ckpt, tmp_path):
    _one_line_error(matedge("info", tmp_path / "none"), "not found")
    (ckpt / "model.safetensors").write_bytes(b"junk")
    _one_line_error(matedge("slice", ckpt, "--spec", "S", "--out", tmp_path / "o"), "corrupt")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow  # real `python -m edge` subprocesses
def test_unknown_preset_and_bad_data(tmp_path):
    r = matedge("train", "--preset", "huge", "--out", tmp_path / "o")
    assert r.returncode == 2 and "invalid choice" in r.stderr
    _one_line_error(matedge("train", "--preset", "tiny", "--data", tmp_path / "nope", "--out", tmp_path / "o"),
                    "does not exist")
    _one_line_error(matedge("train", "--preset", "tiny", "--probs", "1,2", "--out", tmp_path / "o"), "--probs")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow  # real `python -m edge` subprocesses
def test_default_checkpoint_missing_says_what_to_do(tmp_path):
    r = matedge("info", cwd=tmp_path)
    _one_line_error(r, "matedge train --out runs/default")


def test_main_in_process_returns_2(ckpt, capsys):
    assert main(["eval", str(ckpt), "--spec", "Q"]) == 2
    assert "unknown granularity 'Q'" in capsys.readouterr().err


def test_build_members_are_granularity_names_of_an_elastic_build(ckpt, tmp_path, capsys):
    """--members is checked against the checkpoint's granularities before any work starts."""
    out = tmp_path / "build"
    args = ["build", "--device", "host", "--checkpoint", str(ckpt), "--out", str(out), "--quiet"]
    assert main([*args, "--elastic", "--members", "S,XXL"]) == 2
    assert "expected comma-separated granularity names of the model (S, M, L, XL)" in capsys.readouterr().err
    assert main([*args, "--members", "S,XL"]) == 2
    assert "add --elastic" in capsys.readouterr().err
    assert not out.exists()
