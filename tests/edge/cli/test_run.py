"""`matedge run` end to end: a real export of a trained tiny model, generated through the stock
runtime in a real subprocess; streamed text equals eager greedy decoding; bad input is one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def matedge(*args):
    return subprocess.run([sys.executable, "-m", "edge", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, trained_tiny):
    """(the .pte of trained_tiny at XL, the dense model it was exported from, that model's state
    before the export): an fp32 export runs over the dense model itself, not a copy."""
    pytest.importorskip("executorch.extension.llm.runner")
    import exporters
    from edge.slicing import slice_model

    dense = slice_model(trained_tiny, ("XL",) * trained_tiny.config.n_layers).requires_grad_(True)
    before = {k: v.clone() for k, v in dense.state_dict().items()}
    out = tmp_path_factory.mktemp("run")
    return exporters.export_model(dense, "executorch", "fp32", out, context=64, parity=False).path, dense, before


@pytest.fixture(scope="module")
def pte(exported):
    return exported[0]


@pytest.mark.slow
@pytest.mark.integration
def test_fp32_export_leaves_the_model_as_it_was(exported):
    import torch

    _, dense, before = exported
    assert all(p.requires_grad for p in dense.parameters())  # frozen for the export, then given back
    assert all(torch.equal(v, before[k]) for k, v in dense.state_dict().items())


@pytest.mark.slow
@pytest.mark.integration
def test_run_pte_streams_eager_greedy_text_and_figures(pte, trained_tiny):
    from edge.generate import greedy_generate
    from edge.tokenizer import byte_tokenizer

    tok = byte_tokenizer()
    r = matedge("run", pte, "--prompt", "import os\n", "--max-new-tokens", 24, "--threads", 1)
    assert r.returncode == 0, r.stderr
    want = greedy_generate(trained_tiny, tok.encode("import os\n"), 24, ("XL",) * 4)
    if tok.eos_ids[0] in want:
        want = want[:want.index(tok.eos_ids[0])]
    assert r.stdout == tok.decode(want) + "\n"
    figures = r.stderr.splitlines()  # the figures alone: the runner's own log lines are hidden
    assert len(figures) == 1 and "TextLLMRunner" in figures[0] and "time to first token" in figures[0], r.stderr
    assert f"{len(want)} tokens" in figures[0]
    shown = matedge("run", pte, "--prompt", "import os\n", "--max-new-tokens", 4, "--verbose")
    assert shown.returncode == 0 and len(shown.stderr.splitlines()) > 1, shown.stderr  # --verbose shows them


@pytest.mark.parametrize("name, expected", [
    ("model.tflite", "bare LiteRT model"),
    ("model.onnx", "allowed: .pte, .litertlm"),
    ("missing.pte", "does not exist"),
])
def test_run_refuses_what_it_cannot_run(tmp_path, name, expected):
    path = tmp_path / name
    if not name.startswith("missing"):
        path.write_bytes(b"not a model")
    r = matedge("run", path, "--prompt", "hi")
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and expected in r.stderr


def test_run_pte_without_its_tokenizer_is_one_line(tmp_path):
    pytest.importorskip("executorch.extension.llm.runner")
    (tmp_path / "model.pte").write_bytes(b"not a program")
    r = matedge("run", tmp_path / "model.pte", "--prompt", "hi")
    assert r.returncode == 2 and "tokenizer.json not found" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
