"""LiteRT-LM's convention end to end: the graph in eager, the .litertlm bundle, LiteRT-LM's Engine.

The model is a random `tiny` one with an untied head whose rows outside printable ASCII are zero
and whose weights are scaled up (x4): its greedy continuations are long, varied and sensitive to
every earlier token (a cache written at the wrong slot changes them within a few tokens), and
each generated character is one token, so the Engine's text maps back to ids one to one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edge.config import MatFormerConfig
from edge.model import MatFormerLM
from edge.tokenizer import byte_tokenizer

CONTEXT, PREFILL, STEPS = 64, 16, 32


def chaotic_model() -> MatFormerLM:
    torch.manual_seed(0)
    model = MatFormerLM(MatFormerConfig.from_preset("tiny", tie_embeddings=False)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4)
        printable = torch.zeros(model.config.vocab_size, dtype=torch.bool)
        printable[32:127] = True
        model.lm_head.weight[~printable] = 0.0  # logit 0 there; some printable logit is > 0
    return model


@torch.no_grad()
def greedy(model, ids: list[int], steps: int) -> list[int]:
    """Eager greedy continuation up to a stop token (full forward each step: no cache to share a
    bug with)."""
    seq = torch.tensor([ids])
    for _ in range(steps):
        nxt = model(seq)[0, -1].argmax().view(1, 1)
        if nxt.item() in byte_tokenizer().eos_ids:
            break
        seq = torch.cat([seq, nxt], dim=1)
    return seq[0, len(ids):].tolist()


def held_out_prompts(corpus) -> list[str]:
    """Two prompts of validation text (never trained on)."""
    text = bytes(t for t in corpus.val[:4000].tolist() if t < 256).decode("utf-8", errors="ignore")
    return [text[100:118], text[2000:2011]]


def test_graph_matches_the_model_over_chunks_and_turns():
    """Eager LiteRTLMGraph: two prefill chunks, decode steps, then a second prefill at a later
    position give the model's own logits at every position they return."""
    pytest.importorskip("litert_torch")
    from exporters.litert_lm import make_graph, sample_kwargs

    model = chaotic_model()
    graph = make_graph(model, CONTEXT, logits=True)
    seq = torch.randint(0, 256, (1, 40), generator=torch.Generator().manual_seed(1))
    cache = sample_kwargs(graph, 1)["kv_cache"]
    got = []
    with torch.no_grad():
        want = model(seq)[0]
        for start, end in ((0, 7), (7, 12), *((i, i + 1) for i in range(12, 30)), (30, 40)):
            pos = torch.arange(start, end, dtype=torch.int32)
            mask = torch.where(torch.arange(CONTEXT)[None] <= pos[:, None], 0.0, -3.0e4)[None, None]
            out = graph(seq[:, start:end].int(), pos, mask, cache)
            cache = {k: out[f"kv_cache_{k}"] for k in cache}
            got.append(out["logits"][0])
    got = torch.cat(got)
    assert torch.allclose(got, want, atol=1e-4, rtol=0)  # the fp32 parity threshold; logits ~10
    assert (got.argmax(-1) == want.argmax(-1)).all()


def test_windowed_decode_matches_the_full_one_below_its_window():
    """decode_w<W> attends to the first W slots only: below W it gives the logits of decode over
    all C slots, and it writes the same caches (all C slots kept), to float rounding."""
    pytest.importorskip("litert_torch")
    from exporters.litert_lm import make_graph, sample_kwargs

    model, W = chaotic_model(), 32
    full, win = make_graph(model, CONTEXT, logits=True), make_graph(model, CONTEXT, logits=True, window=W)
    seq = torch.randint(0, 256, (1, W), generator=torch.Generator().manual_seed(2))
    caches = [sample_kwargs(full, 1)["kv_cache"], sample_kwargs(win, 1)["kv_cache"]]
    with torch.no_grad():
        for p in range(W):
            pos = torch.tensor([p], dtype=torch.int32)
            outs = [g(seq[:, p:p + 1].int(), pos, torch.where(torch.arange(width) <= p, 0.0, -3.0e4).view(1, 1, 1, -1), c)
                    for g, c, width in ((full, caches[0], CONTEXT), (win, caches[1], W))]
            caches = [{k: o[f"kv_cache_{k}"] for k in c} for o, c in zip(outs, caches)]
            assert torch.allclose(outs[0]["logits"], outs[1]["logits"], atol=1e-5, rtol=0), p
    # layer 0 writes projections of the same inputs; deeper layers' inputs went through attention
    # summed over W vs C slots, whose float order the CPU's vector width decides (~1e-6 apart)
    assert torch.equal(caches[0]["k_0"], caches[1]["k_0"]) and torch.equal(caches[0]["v_0"], caches[1]["v_0"])
    assert all(torch.allclose(caches[0][k], caches[1][k], atol=1e-5, rtol=0) for k in caches[0])
    assert caches[1]["k_0"].shape[2] == CONTEXT and caches[1]["k_0"][:, :, :W].abs().sum() > 0


# -- real exports (slow) -------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["fp32", "int8"])
def bundle(request, tmp_path_factory, val_stream, trained_tiny):
    """(artifact, the dense model it was exported from). int8 uses the trained `tiny` model: greedy
    agreement of a quantized artifact means something only on peaked distributions."""
    pytest.importorskip("litert_torch")
    from edge.slicing import slice_model
    from edge.spec import parse_spec
    from exporters import export_model

    from .conftest import MIXED_SPEC

    model = chaotic_model() if request.param == "fp32" else \
        slice_model(trained_tiny, parse_spec(MIXED_SPEC, trained_tiny.config))
    out = tmp_path_factory.mktemp(f"litertlm-{request.param}")
    art = export_model(model, "litert", request.param, out, context=CONTEXT, prefill_len=PREFILL,
                       val_stream=val_stream)
    return art, model


@pytest.mark.slow
@pytest.mark.integration
def test_bundle_files_metadata_and_signatures(bundle):
    from ai_edge_litert.interpreter import Interpreter

    from exporters.base import file_size, sha256
    from exporters.litert_lm import cache_names
    from exporters.litertlm_bundle import peek

    bundle, _ = bundle
    m, folder = bundle.meta, bundle.path.parent
    assert m["parity"]["passed"], m["parity"]
    assert sorted(p.name for p in folder.iterdir()) == \
        ["model.json", "model.litertlm", "model.tflite", "tokenizer.json", "tokenizer_config.json"]
    for role, f in m["files"].items():
        assert f["bytes"] == file_size(folder / f["file"]) and f["sha256"] == sha256(folder / f["file"]), role
    assert {k: v for k, v in m["tokenizer"].items() if k != "files"} == byte_tokenizer().describe()
    sigs = Interpreter(model_path=str(bundle.path)).get_signature_list()
    caches = cache_names(4)
    assert sigs == {f"prefill_{PREFILL}": {"inputs": sorted(["tokens", "input_pos", "mask", *caches]),
                                           "outputs": sorted(caches)},
                    "decode": {"inputs": sorted(["tokens", "input_pos", "mask", *caches]),
                               "outputs": sorted(["logits", *caches])},
                    "decode_w32": {"inputs": sorted(["tokens", "input_pos", "mask", *caches]),
                                   "outputs": sorted(["logits", *caches])}}
    assert m["decode_windows"] == [32] and m["entry_points"]["decode_w32"]["inputs"][2]["shape"] == [1, 1, 1, 32]
    dump = peek(folder / "model.litertlm")  # the builder's own reader
    for line in ("ids: 257", "ids: 258", f"max_num_tokens: {CONTEXT}", "generic_model",
                 "HF_Tokenizer_Zlib", "tf_lite_prefill_decode"):
        assert line in dump, line


@pytest.mark.slow
@pytest.mark.integration
def test_engine_generates_what_eager_does_and_continues_the_cache(bundle, corpus):
    """LiteRT-LM's Engine: 32 greedy tokens per held-out prompt equal eager PyTorch (int8: >= 90%
    of positions), then a second turn in the same session continues the conversation's cache."""
    pytest.importorskip("litert_lm")
    from exporters.litert_engine import generate, open_engine, session

    bundle, model = bundle
    tok = byte_tokenizer()
    exact = bundle.meta["precision"] == "fp32"
    path = bundle.path.with_suffix(".litertlm")
    with open_engine(path, threads=1) as engine:
        for prompt in held_out_prompts(corpus):
            ids = tok.encode(prompt)  # <bos> + bytes, as the Engine's start token + tokenizer
            want = tok.decode(greedy(model, ids, STEPS))
            got = generate(engine, prompt, STEPS)
            if exact:
                assert len(want) == STEPS and got == want
            else:
                assert sum(a == b for a, b in zip(got, want)) >= 0.9 * max(len(want), len(got)), (got, want)
        if not exact:
            return  # a second turn after a differing first turn compares different contexts
        sess = session(engine, 8)
        first = generate(engine, prompt, 8, sess=sess)
        second = generate(engine, " and", 8, sess=sess)
        context = ids + tok.encode(first, bos=False) + tok.encode(" and", bos=False)
        assert first == want[:8] and len(second) >= 6  # the runtime may count the pending token
        assert second == tok.decode(greedy(model, context, len(second)))


@pytest.mark.slow
@pytest.mark.integration
def test_matedge_run_streams_the_bundle_through_litert_lm(bundle, corpus, capfd):
    """`matedge run model.litertlm`: the stock engine's greedy text on stdout, figures on stderr,
    and none of the engine's own log lines (captured at the file descriptors, where C++ writes)."""
    pytest.importorskip("litert_lm")
    from edge.cli.main import main

    bundle, model = bundle
    if bundle.meta["precision"] != "fp32":
        pytest.skip("exact text only at fp32 (int8 agreement is checked above)")
    prompt = held_out_prompts(corpus)[0]
    want = byte_tokenizer().decode(greedy(model, byte_tokenizer().encode(prompt), 16))
    assert main(["run", str(bundle.path.with_suffix(".litertlm")), "--prompt", prompt, "--max-new-tokens", "16"]) == 0
    out, err = capfd.readouterr()
    assert want in out
    assert len(err.splitlines()) == 1 and "LiteRT-LM Engine" in err and "ms/token" in err, err


@pytest.mark.slow
@pytest.mark.integration
def test_project_runner_decodes_through_the_windows_in_place(bundle, corpus):
    """The project's runner (CompiledModel, caches bound in place): greedy tokens across the
    decode_w32 -> decode boundary equal eager (int8: >= 90%), and closing it removes the
    XNNPACK weight-cache folder it made."""
    from exporters.litert import LiteRTRunner

    bundle, model = bundle
    runner = LiteRTRunner(bundle.path, threads=1)
    ids = byte_tokenizer().encode(held_out_prompts(corpus)[0])
    assert runner.decode_signature(len(ids)) == "decode_w32" and runner.decode_signature(40) == "decode"
    want, got = greedy(model, ids, STEPS), []
    logits = runner.forward(torch.tensor([ids]).numpy(), 0)
    while len(got) < len(want):
        got.append(int(logits.reshape(-1).argmax()))
        logits = runner.decode(got[-1], len(ids) + len(got) - 1)
    assert len(ids) + len(want) > 32  # both signatures ran
    agree = sum(a == b for a, b in zip(got, want))
    assert agree == len(want) if bundle.meta["precision"] == "fp32" else agree >= 0.9 * len(want), (got, want)
    folder = runner.session._tmp
    assert any(p.suffix == ".xnnpack_cache" for p in Path(folder).iterdir())
    runner.close()
    assert not Path(folder).exists()


def test_decode_windows_are_inside_the_context():
    from exporters.litert import decode_windows

    assert decode_windows(16) == [] and decode_windows(32) == [] and decode_windows(64) == [32]
    assert decode_windows(2048) == [256, 512, 1024]


def test_elastic_signature_names_are_unique_or_refused():
    """decode_<m>_w<N> of member m must not be the decode of another member named m_w<N>."""
    from exporters.base import ExportError
    from exporters.elastic_litert import signature_names

    names = signature_names(["S", "XL"], [32, 64])
    assert names["decode_S_w32"] == "S" and names["decode_XL_w64"] == "XL" and len(names) == 8
    with pytest.raises(ExportError, match="clashing"):
        signature_names(["S", "S_w32"], [32])


def test_frozen_converts_the_model_itself_and_restores_it(tiny_model):
    """The LiteRT exporter converts the model in place of a copy: eval mode and no gradients
    while inside, the caller's training flags and requires_grad as they were afterwards."""
    from exporters.litert_lm import frozen

    tiny_model.train()
    tiny_model.layers[0].ffn.w_down.weight.requires_grad_(False)
    with frozen(tiny_model) as m:
        assert m is tiny_model and not any(x.training for x in m.modules())
        assert not any(p.requires_grad for p in m.parameters())
    assert all(x.training for x in tiny_model.modules())
    grads = [p.requires_grad for p in tiny_model.parameters()]
    assert grads.count(False) == 1
    tiny_model.layers[0].ffn.w_down.weight.requires_grad_(True)
    tiny_model.eval()
