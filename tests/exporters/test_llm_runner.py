"""The .pte runs as it is in ExecuTorch's own LLM runner (``TextLLMRunner``, the runner of
``llama_main`` and the Android/iOS apps) with the tokenizer.json written beside it: greedy
generation from held-out prompts equals eager PyTorch, and a second turn continues the cache."""

from __future__ import annotations

import json

import pytest

from tests.exporters.conftest import MIXED_SPEC

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CONTEXT, NEW = 64, 32


@pytest.fixture(scope="module")
def exported(mixed_exports):
    """{precision: artifact} of the trained tiny model at the mixed spec (context 64 = CONTEXT),
    project parity on: the session's exports that test_matrix checks too."""
    pytest.importorskip("executorch.extension.llm.runner")
    arts = {p: mixed_exports("executorch", p) for p in ("fp32", "int8")}
    assert all(a.meta["context"] == CONTEXT for a in arts.values())
    return arts


@pytest.fixture(scope="module")
def random_model_pte(tmp_path_factory):
    """(model, fp32 artifact) of a random tiny model whose greedy text depends on the whole context.

    The trained tiny model answers almost any prompt with one repeated byte, whatever came
    before, so it cannot tell a runner that continued its cache from one that dropped it. Large
    random weights make attention matter; the head is zero outside printable ASCII, so the text
    round-trips through the byte tokenizer exactly."""
    pytest.importorskip("executorch.extension.llm.runner")
    import torch

    import exporters
    from edge.config import MatFormerConfig
    from edge.model import MatFormerLM

    torch.manual_seed(1)
    model = MatFormerLM(MatFormerConfig.from_preset("tiny", tie_embeddings=False)).eval()
    with torch.no_grad():
        for w in model.parameters():
            if w.dim() == 2:
                w.normal_(0, 0.2)
        model.lm_head.weight[:32] = 0
        model.lm_head.weight[127:] = 0  # ids 32..126 only: printable ASCII
    out = tmp_path_factory.mktemp("llm-runner-random")
    art = exporters.export_model(model, "executorch", "fp32", out, spec=MIXED_SPEC, context=CONTEXT,
                                 name="random", parity=False)
    return model, art


def held_out_prompts(val_stream, n=3, length=16) -> list[str]:
    """ASCII prompts cut from the validation text (byte ids < 128, no specials)."""
    ids, out, start = val_stream.tolist(), [], 1000
    while len(out) < n and start + length < len(ids):
        chunk = ids[start:start + length]
        if all(32 <= t < 127 for t in chunk):
            out.append(bytes(chunk).decode())
        start += 997
    return out


def eager_text(model, ids, n) -> str:
    from edge.generate import greedy_generate
    from edge.tokenizer import byte_tokenizer

    tok = byte_tokenizer()
    new = greedy_generate(model, ids, n, tuple(MIXED_SPEC.split(",")))
    if tok.eos_ids[0] in new:  # the runner stops at EOS and does not emit it
        new = new[:new.index(tok.eos_ids[0])]
    return tok.decode(new)


def test_artifact_names_its_tokenizer_and_runner_metadata(exported):
    from exporters.base import sha256

    art = exported["fp32"]
    meta = json.loads(art.meta_path.read_text())
    files = meta["tokenizer"]["files"]
    assert set(files) == {"tokenizer.json", "tokenizer_config.json"}
    for name, digest in files.items():
        assert sha256(art.path.parent / name) == digest
    assert meta["tokenizer"]["bos_id"] == 257 and meta["tokenizer"]["eos_ids"] == [258]
    cm = meta["constant_methods"]
    assert cm["get_max_context_len"] == CONTEXT and cm["get_max_seq_len"] == CONTEXT - 1
    assert cm["get_eos_ids"] == [258] and cm["get_n_layers"] == 4 and cm["use_kv_cache"]
    assert list(meta["entry_points"]) == ["forward"]
    assert meta["parity"]["passed"], meta["parity"]["failures"]


def test_fp32_greedy_generation_equals_eager(exported, trained_tiny, val_stream):
    from edge.device.stock_run import run_pte
    from edge.tokenizer import byte_tokenizer

    tok = byte_tokenizer()
    for prompt in held_out_prompts(val_stream):
        want = eager_text(trained_tiny, tok.encode(prompt), NEW)
        got = run_pte(exported["fp32"].path, prompt, NEW, threads=1)
        assert got.text == want, prompt
        assert got.tokens == len(want) and (got.tokens == NEW or len(want) < NEW)
        assert got.ttft_ms > 0 and got.ms_per_token > 0


def test_llama_ops_pte_passes_parity_and_continues_the_cache(tmp_path, random_model_pte, val_stream):
    """`--ops llama` (ExecuTorch's update_cache + custom_sdpa over the filled prefix): parity
    through executorch.runtime, and in TextLLMRunner a first turn equals eager and a second turn
    continues the cache at its position (the random model's text depends on its context)."""
    import exporters
    from edge.device.stock_run import PteChat
    from edge.tokenizer import byte_tokenizer

    model = random_model_pte[0]
    art = exporters.export_model(model, "executorch", "fp32", tmp_path, spec=MIXED_SPEC, context=CONTEXT,
                                 val_stream=val_stream, ops="llama")
    assert art.meta["ops"] == "llama" and art.meta["parity"]["passed"], art.meta["parity"]["failures"]
    tok = byte_tokenizer()
    first, second = held_out_prompts(val_stream, n=2)
    chat = PteChat(art.path)
    turn1, turn2 = chat.generate(first, 12).text, chat.generate(second, 12).text
    reply = tok.encode(turn1, bos=False)
    assert len(reply) == 12 and turn1 == eager_text(model, tok.encode(first), 12)
    assert turn2 == eager_text(model, tok.encode(first) + reply[:-1] + tok.encode(second, bos=False), 12)


def test_int8_agrees_with_eager_on_at_least_90_percent_of_tokens(exported, trained_tiny, val_stream):
    """Teacher-forced through the stock runner: the prompt plus eager's first i tokens, one new token."""
    from edge.device.stock_run import PteChat
    from edge.tokenizer import byte_tokenizer

    tok = byte_tokenizer()
    prompt = held_out_prompts(val_stream, n=1)[0]
    want = eager_text(trained_tiny, tok.encode(prompt), NEW)
    agree = 0
    for i in range(len(want)):
        chat = PteChat(exported["int8"].path)  # a fresh cache per step
        agree += chat.generate(prompt + want[:i], 1).text == want[i]
    assert len(want) >= 16 and agree / len(want) >= 0.9


def test_second_turn_continues_the_cache(random_model_pte, val_stream):
    from edge.device.stock_run import PteChat
    from edge.tokenizer import byte_tokenizer

    model, art = random_model_pte
    tok = byte_tokenizer()
    first, second = held_out_prompts(val_stream, n=2)
    chat = PteChat(art.path)
    turn1 = chat.generate(first, 12).text
    turn2 = chat.generate(second, 12).text
    # The cache holds the first prompt, the first reply but its last token, then the second
    # prompt: the runner samples a turn's last token without feeding it back (each decode step
    # feeds the token before it), so the next turn's prefill starts where that token would be.
    reply = tok.encode(turn1, bos=False)
    assert len(reply) == 12  # no EOS: the history below is the whole first turn
    history = tok.encode(first) + reply[:-1] + tok.encode(second, bos=False)
    assert turn1 == eager_text(model, tok.encode(first), 12)
    assert turn2 == eager_text(model, history, 12)
    assert turn2 != eager_text(model, tok.encode(second), 12)  # the history mattered

