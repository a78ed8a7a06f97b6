"""apps/cpp generation mode: the native runner's greedy text generation from an exported
ExecuTorch artifact (forward(tokens, input_pos), tokenizer.json read by pytorch-tokenizers'
HFTokenizer) matches eager PyTorch token for token, and refuses bad requests cleanly."""

from __future__ import annotations

import json
import subprocess

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CONTEXT = 48


@pytest.fixture(scope="module")
def built(tmp_path_factory, trained_tiny):
    """(runner binary, exported artifact path, its tokenizer.json, the universal model, its spec). The model is
    trained: random weights repeat one token whatever the context, which would hide a wrong
    position or a misread logits row."""
    pytest.importorskip("executorch")
    import exporters
    from edge.device.cpp_runner import ensure_cpp_runner

    model = trained_tiny
    spec = ("S", "XL", "M", "L")
    art = exporters.export_model(model, "executorch", "fp32", tmp_path_factory.mktemp("gen"), spec=",".join(spec),
                                 context=CONTEXT, parity=False)
    return ensure_cpp_runner(), art.path, art.path.parent / "tokenizer.json", model, spec


def _run(binary, *args):
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, timeout=120)


def test_generation_matches_eager_greedy_decoding(built):
    from edge.data import EOS, encode
    from edge.generate import greedy_generate

    binary, path, tokenizer, model, spec = built
    prompt = "def main("
    r = _run(binary, "--model", path, "--tokenizer", tokenizer, "--generate", prompt, "--max-new-tokens", 20,
             "--threads", 1, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    ids = encode(prompt)
    want = greedy_generate(model, ids, 20, spec)
    if EOS in want:
        want = want[:want.index(EOS)]
    assert out["prompt_tokens"] == len(ids) and out["tokens"] == want
    assert out["stopped"] == ("eos" if len(want) < 20 else "max_new_tokens")
    assert out["prefill_ms"] > 0 and out["peak_rss_bytes"] > 0


def test_generation_matches_eager_with_either_graph(built, tmp_path):
    """The default export uses ExecuTorch's LLM custom ops, whose kernels the runner loads from
    the wheel only for such a program (and reports what that library added to its resident set);
    a plain-ops program runs without them. Both generate eager's tokens."""
    import exporters
    from edge.data import EOS, encode
    from edge.generate import greedy_generate

    binary, path, tokenizer, model, spec = built
    assert json.loads(path.with_suffix(".json").read_text())["ops"] == "llama"
    plain = exporters.export_model(model, "executorch", "fp32", tmp_path, spec=",".join(spec), context=CONTEXT,
                                   parity=False, ops="aten")
    assert plain.meta["ops"] == "aten"
    want = greedy_generate(model, encode("x = "), 12, spec)
    want = want[:want.index(EOS)] if EOS in want else want  # the runner stops at EOS
    for program in (path, plain.path):
        r = _run(binary, "--model", program, "--tokenizer", tokenizer, "--generate", "x = ", "--max-new-tokens", 12,
                 "--threads", 1, "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["tokens"] == want
        assert "executorch:" not in r.stderr  # neither the probe's missing kernels nor the library's log hook
        bench = json.loads(_run(binary, "--model", program, "--benchmark", "--methods", "decode", "--runs", 3,
                                "--prompt-tokens", 8).stdout)
        assert (bench["llm_ops_bytes"] > 10 * 2**20) == (program == path)


def test_generation_stops_at_the_end_of_the_cache(built):
    binary, path, tokenizer, _, _ = built
    r = _run(binary, "--model", path, "--tokenizer", tokenizer, "--generate", "x" * 10, "--max-new-tokens", 500, "--json")
    out = json.loads(r.stdout)
    # 11 prompt positions, then one decode per position up to the cache's last: 48 - 11 + 1 tokens
    if out["stopped"] == "context":
        assert len(out["tokens"]) == CONTEXT - 11 + 1
    else:  # this model's greedy text ends before the cache does
        assert out["stopped"] == "eos" and len(out["tokens"]) < CONTEXT - 11 + 1
    plain = _run(binary, "--model", path, "--tokenizer", tokenizer, "--generate", "hi", "--max-new-tokens", 5)
    assert plain.returncode == 0 and "tokens (stopped:" in plain.stderr  # text on stdout, figures on stderr
    # no runtime Info lines (CPU probing while the program loads): the runner keeps Errors only
    assert not [line for line in plain.stderr.splitlines() if line.startswith("I ") and "executorch:" in line]
    from edge.tokenizer import byte_tokenizer

    tokens = json.loads(_run(binary, "--model", path, "--tokenizer", tokenizer, "--generate", "hi",
                             "--max-new-tokens", 5, "--json").stdout)["tokens"]
    assert plain.stdout == byte_tokenizer().decode(tokens) + "\n"  # the library decodes the ids


@pytest.mark.parametrize("args, expected", [
    (["--tokenizer", "TOK", "--generate", "p" * CONTEXT], f"this program takes at most {CONTEXT - 1}"),
    (["--generate", "hi"], "needs --tokenizer PATH"),
    (["--tokenizer", "MODEL", "--generate", "hi"], "cannot read tokenizer"),
    (["--generate"], "--generate needs a value"),
])
def test_bad_generation_requests_are_one_line_exit_2(built, args, expected):
    binary, path, tokenizer, _, _ = built
    args = [{"TOK": str(tokenizer), "MODEL": str(path)}.get(a, a) for a in args]
    r = _run(binary, "--model", path, *args)
    assert r.returncode == 2 and r.stdout == ""
    # the runtime's own info lines ("I 00:00:00 executorch:...") may precede it: ours is one line
    ours = [line for line in r.stderr.splitlines() if line.startswith("matedge_runner:")]
    assert len(ours) == 1 and expected in ours[0]
