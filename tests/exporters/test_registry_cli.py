"""Registry, lazy imports and bad input: each mistake gives one clear line and exit code 2."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

from edge.cli import main
from edge.config import MatFormerConfig
from edge.errors import MatEdgeError
from edge.model import MatFormerLM
from exporters import EXPORTERS, PRECISIONS, ExportError, check_request, export_model, get_exporter


@pytest.mark.integration  # imports every backend's library
def test_registry_names_every_backend_and_its_module():
    assert EXPORTERS == {"executorch": "exporters.executorch", "litert": "exporters.litert",
                         "coreml": "exporters.coreml"}
    for name in EXPORTERS:
        mod = get_exporter(name)
        assert mod.PRECISIONS == PRECISIONS[name]
        assert mod.SUFFIX in (".pte", ".tflite", ".mlpackage")
        assert callable(mod.export) and callable(mod.load_runner)
    assert issubclass(ExportError, MatEdgeError)


def test_unknown_backend_and_impossible_precision():
    with pytest.raises(ExportError, match="unknown backend 'onnx'.*executorch, litert, coreml"):
        get_exporter("onnx")
    with pytest.raises(ExportError, match="cannot write precision '8da4w'.*written by executorch"):
        check_request("litert", "8da4w")
    with pytest.raises(ExportError, match="cannot write precision 'fp32'"):
        check_request("coreml", "fp32")


def test_missing_library_names_the_extra(monkeypatch):
    """Importing a backend module is cheap; its library is needed only to export or run."""
    monkeypatch.setitem(sys.modules, "coremltools", None)  # makes `import coremltools` fail
    monkeypatch.delitem(sys.modules, "exporters.coreml", raising=False)  # import the plugin afresh
    mod = importlib.import_module("exporters.coreml")  # the plugin itself still imports
    assert mod.SUFFIX == ".mlpackage"
    with pytest.raises(ExportError, match=r"pip install 'matformer-edge\[coreml\]'"):
        get_exporter("coreml")


@pytest.mark.integration  # the check runs after the backend's library is found
def test_8da4w_rejects_widths_that_are_not_group_multiples():
    cfg = MatFormerConfig.from_preset("tiny", d_ff=128)  # S = 16 hidden units < a group of 32
    with pytest.raises(ExportError, match="multiples of 32"):
        export_model(MatFormerLM(cfg), "executorch", "8da4w", "unused", spec="S,M,L,XL")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from edge.checkpoint import save_model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_model(MatFormerLM(MatFormerConfig.from_preset("tiny")), folder)
    return folder


@pytest.mark.integration  # most cases are rejected after the backend library is imported
@pytest.mark.parametrize("extra, message", [
    (["--backend", "tflite"], "unknown backend 'tflite'"),
    (["--backend", "litert", "--precision", "int4"], "cannot write precision 'int4'"),
    (["--backend", "coreml", "--precision", "8da4w"], "cannot write precision '8da4w'"),
    (["--backend", "litert", "--spec", "S,M"], "spec 'S,M' has 2 layers but the model has 4"),
    (["--backend", "litert", "--spec", "XXL"], "unknown granularity 'XXL'"),
    (["--backend", "litert"], "universal checkpoint with granularities S, M, L, XL: pass --spec"),
    (["--backend", "litert", "--spec", "XL", "--ops", "llama"], "'litert' has no choice of ops (--ops 'llama' is for executorch)"),
    (["--backend", "executorch", "--spec", "XL", "--ops", "sdpa"], "no ops 'sdpa' (allowed: llama, aten)"),
    (["--backend", "litert", "--spec", "XL", "--context", "999"], "context 999 is out of range"),
])
def test_cli_bad_input_is_one_line_and_exit_2(checkpoint, tmp_path, capsys, extra, message):
    rc = main(["export", str(checkpoint), "--out", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and message in err, err
    assert not list((tmp_path / "out").glob("model*"))  # nothing written


def test_default_spec_is_the_only_granularity_of_an_imported_dense_model(tmp_path):
    from edge.cli.export import _default_spec

    tiny = MatFormerConfig.from_preset("tiny")
    dense = MatFormerConfig(**{**tiny.to_dict(), "granularity_fractions": (1.0,), "granularity_names": ("XL",)})
    assert dense.is_universal and _default_spec(dense, tmp_path) == "XL"
    sliced = MatFormerConfig(**{**tiny.to_dict(), "ffn_sizes": (32,) * tiny.n_layers})
    assert _default_spec(sliced, tmp_path) is None  # a sliced model has its spec already
    with pytest.raises(MatEdgeError, match=r'e\.g\. "XL", or one per layer, e\.g\. "S,M,L,\.\.\."'):
        _default_spec(tiny, tmp_path)


def test_cli_unwritable_output_folder(checkpoint, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    rc = main(["export", str(checkpoint), "--backend", "litert", "--spec", "XL", "--out", str(blocker / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "cannot be created" in err, err


def test_cli_missing_checkpoint(tmp_path, capsys):
    rc = main(["export", str(tmp_path / "nope"), "--backend", "litert", "--spec", "XL", "--out", str(tmp_path)])
    assert rc == 2 and "not found" in capsys.readouterr().err


@pytest.mark.integration
@pytest.mark.slow
def test_cli_export_prints_only_its_own_lines(checkpoint, tmp_path):
    """litert-torch's progress lines (stdout), TensorFlow's absl/oneDNN notices, the quantizer's
    progress bars and torch's deprecation warnings (stderr) go to a temporary log, deleted after a
    good export; the per-layer caches print as one item per family. (A child process: the
    redirection is of file descriptors, which pytest's own capture would sit in front of.)"""
    import subprocess

    r = subprocess.run([sys.executable, "-m", "edge", "export", str(checkpoint), "--backend", "litert",
                        "--precision", "int8", "--spec", "S,M,L,XL", "--context", "64", "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    out = r.stdout
    assert "LiteRT-Torch Convert" not in out and "absl" not in out
    assert out.startswith("exporting litert int8, then the parity check ...\nwrote ")
    assert "kv_cache_k_0..3[1, 2, 64, 16]:float32" in out and "kv_cache_k_1" not in out
    assert "activation outliers smoothed" in out and "parity (runtime): PASS" in out
