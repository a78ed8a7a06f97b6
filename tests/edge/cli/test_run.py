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


def copy_with_config(pte: Path, folder: Path, **changes) -> Path:
    """A copy of the artifact and its tokenizer files in ``folder``, tokenizer_config.json's fields
    set to ``changes``; the copy's path."""
    import json
    import shutil

    for f in (pte, pte.parent / "tokenizer.json", pte.parent / "tokenizer_config.json"):
        shutil.copy(f, folder / f.name)
    config = folder / "tokenizer_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), **changes}))
    return folder / pte.name


@pytest.mark.slow
@pytest.mark.integration
def test_run_chat_renders_the_template_beside_the_artifact(pte, tmp_path):
    """--chat MESSAGE generates what --prompt <the template rendered around MESSAGE> does; the
    template comes from tokenizer_config.json beside the artifact, not from the tool."""
    import argparse

    from edge.cli.run import prompt_text

    copy = copy_with_config(pte, tmp_path, chat_template="{% for m in messages %}import {{ m.content }}\n{% endfor %}")
    chat = matedge("run", copy, "--chat", "os", "--max-new-tokens", 12)
    plain = matedge("run", copy, "--prompt", "import os\n", "--max-new-tokens", 12)
    assert chat.returncode == 0 and plain.returncode == 0, chat.stderr + plain.stderr
    assert chat.stdout == plain.stdout and chat.stdout != "\n"
    assert "12 tokens" in chat.stderr and "12 tokens" in plain.stderr
    assert prompt_text(argparse.Namespace(artifact=copy, chat="os", prompt=None)) == "import os\n"
    # the exported byte tokenizer has no template: one line, exit 2, nothing generated
    r = matedge("run", pte, "--chat", "sort a list")
    assert r.returncode == 2 and r.stdout == "" and "no chat template" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_run_needs_a_prompt_or_a_chat_message_not_both(tmp_path):
    (tmp_path / "model.pte").write_bytes(b"not a program")
    for extra in ([], ["--prompt", "a", "--chat", "b"]):
        r = matedge("run", tmp_path / "model.pte", *extra)
        assert r.returncode == 2 and r.stdout == "" and ("--prompt" in r.stderr and "--chat" in r.stderr), r.stderr


@pytest.mark.slow
@pytest.mark.integration
def test_the_stop_tokens_text_is_not_printed(pte, trained_tiny, tmp_path):
    """The runner hands the stop token's text over too (SmolLM2's "<|im_end|>"); `matedge run`
    prints the answer without it. Here a byte the model does write is named the stop token in
    tokenizer_config.json (the program's own stop ids are unchanged, so generation goes on)."""
    from edge.generate import greedy_generate
    from edge.tokenizer import byte_tokenizer

    tok = byte_tokenizer()
    ids = greedy_generate(trained_tiny, tok.encode("import os\n"), 16, ("XL",) * 4)
    text = tok.decode(ids[:ids.index(tok.eos_ids[0])] if tok.eos_ids[0] in ids else ids)
    stop = next(c for c in text if c.isprintable() and len(c.encode()) == 1)
    copy = copy_with_config(pte, tmp_path, eos_token_ids=[ord(stop)])
    r = matedge("run", copy, "--prompt", "import os\n", "--max-new-tokens", 16)
    assert r.returncode == 0, r.stderr
    assert r.stdout == text.replace(stop, "") + "\n" and stop in text
