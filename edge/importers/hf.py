"""Import a Hugging Face folder of a ``LlamaForCausalLM``-style model.

Reads ``config.json`` (``intermediate_size`` an int or a per-layer list, as Gemma 3n's MatFormer
slicing writes it), the weights from ``model.safetensors`` or shards listed in
``model.safetensors.index.json`` (safetensors only: nothing is unpickled), and the tokenizer
(``tokenizer.json`` + ``tokenizer_config.json``, the chat template from there or from
``chat_template.jinja``). HF's Llama already uses half-split RoPE, like edge.model: no permutation.
"""

from __future__ import annotations

from pathlib import Path

import torch

from edge.errors import MatEdgeError
from edge.importers.llama import ImportFailed, build_model, dense_config
from edge.inputs import read_json
from edge.model import MatFormerLM
from edge.tokenizer import Tokenizer, TokenizerError, load_tokenizer

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM",)
SUPPORTED_MODEL_TYPES = ("llama",)
INDEX = "model.safetensors.index.json"

# HF name (after "model.layers.{i}.") -> the project's name (after "layers.{i}.")
LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn.wq.weight",
    "self_attn.k_proj.weight": "attn.wk.weight",
    "self_attn.v_proj.weight": "attn.wv.weight",
    "self_attn.o_proj.weight": "attn.wo.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn.w_gate.weight",
    "mlp.up_proj.weight": "ffn.w_up.weight",
    "mlp.down_proj.weight": "ffn.w_down.weight",
}
TOP_NAMES = {"model.embed_tokens.weight": "tok_emb.weight", "model.norm.weight": "norm.weight",
             "lm_head.weight": "lm_head.weight"}


def read_config(folder: Path) -> dict:
    """config.json, checked to describe a plain Llama decoder this project can run exactly."""
    path = folder / "config.json"
    if not path.exists():
        raise ImportFailed(f"{str(folder)!r} has no config.json (expected a Hugging Face model folder)")
    cfg = _read_json(path, "model config")
    arch = cfg.get("architectures") or []
    if cfg.get("model_type") not in SUPPORTED_MODEL_TYPES or (arch and not set(arch) & set(SUPPORTED_ARCHITECTURES)):
        raise ImportFailed(f"{str(folder)!r}: architecture {arch or cfg.get('model_type')!r} is not supported "
                           f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)}, model_type 'llama')")
    rope = cfg.get("rope_scaling") or {}
    rope_type = (cfg.get("rope_parameters") or {}).get("rope_type", rope.get("rope_type", rope.get("type", "default")))
    unsupported = {"hidden_act": cfg.get("hidden_act", "silu") not in ("silu", "swish"),
                   "attention_bias": bool(cfg.get("attention_bias")), "mlp_bias": bool(cfg.get("mlp_bias")),
                   "rope_type": rope_type not in ("default", None),
                   "head_dim": cfg.get("head_dim") not in (None, cfg["hidden_size"] // cfg["num_attention_heads"])}
    bad = [f"{k}={cfg.get(k, rope_type)!r}" for k, v in unsupported.items() if v]
    if bad:
        raise ImportFailed(f"{str(folder)!r}: unsupported Llama variant ({', '.join(bad)}; supported: silu, "
                           f"no biases, default RoPE, head_dim = hidden_size / num_attention_heads)")
    return cfg


def _read_json(path: Path, what: str) -> dict:
    """A JSON object from ``path`` through inputs.read_json (bounded regular file, one-line errors)."""
    try:
        data = read_json(path, what)
    except MatEdgeError as e:
        raise ImportFailed(str(e)) from None
    if not isinstance(data, dict):
        raise ImportFailed(f"{what} {str(path)!r}: top level is {type(data).__name__} (allowed: a JSON object)")
    return data


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the single or sharded safetensors checkpoint, by HF name."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if (folder / INDEX).is_file():
        try:
            weight_map = _read_json(folder / INDEX, "safetensors index")["weight_map"]
        except (KeyError, TypeError) as e:
            raise ImportFailed(f"{str(folder / INDEX)!r} is not a safetensors index ({e})") from None
        files = sorted(set(weight_map.values()))
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        found = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pth"))
        raise ImportFailed(f"{str(folder)!r} has no model.safetensors or {INDEX}"
                           + (f" (found {found[:2]}: pickled weights are not loaded; convert them to safetensors)"
                              if found else ""))
    state = {}
    for name in files:
        if Path(name).name != name:  # an index must not point outside the folder
            raise ImportFailed(f"{str(folder / INDEX)!r} names a shard outside the folder: {name!r}")
        try:
            state.update(load_file(str(folder / name)))
        except (FileNotFoundError, SafetensorError, OSError) as e:
            raise ImportFailed(f"{str(folder / name)!r}: cannot read safetensors ({e})") from None
    return state


def rename(state: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """HF names -> the project's; unknown names are kept so build_model reports them."""
    out = {}
    for name, w in state.items():
        if name in TOP_NAMES:
            out[TOP_NAMES[name]] = w
            continue
        parts = name.split(".", 3)  # model, layers, i, rest
        if len(parts) == 4 and parts[:2] == ["model", "layers"] and parts[3] in LAYER_NAMES:
            out[f"layers.{parts[2]}.{LAYER_NAMES[parts[3]]}"] = w
        elif not name.endswith("rotary_emb.inv_freq"):  # a derived buffer some exports include
            out[name] = w
    return out


def read_tokenizer(folder: Path) -> Tokenizer:
    """tokenizer.json with its special ids and chat template (from the config or a .jinja file)."""
    if not (folder / "tokenizer.json").is_file():
        extra = " (a SentencePiece tokenizer.model alone is not supported)" if (folder / "tokenizer.model").exists() else ""
        raise ImportFailed(f"{str(folder)!r} has no tokenizer.json{extra}")
    try:
        tok = load_tokenizer(folder)
    except TokenizerError as e:
        raise ImportFailed(str(e)) from None
    cfg = _read_json(folder / "tokenizer_config.json", "tokenizer config") if (folder / "tokenizer_config.json").is_file() else {}
    if "add_bos_token" not in cfg and tok.bos_id is not None:
        # No explicit flag: the post-processor decides, as in transformers and ExecuTorch's runner.
        tok.add_bos = tok.hf.encode("a", add_special_tokens=True).ids[:1] == [tok.bos_id]
    if tok.chat_template is None and (folder / "chat_template.jinja").is_file():
        tok.chat_template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    gen = folder / "generation_config.json"
    if gen.is_file():
        eos = _read_json(gen, "generation config").get("eos_token_id")
        ids = eos if isinstance(eos, list) else [eos] if isinstance(eos, int) else []
        tok.eos_ids = list(dict.fromkeys(tok.eos_ids + ids))
    tok.name = folder.name
    return tok


def load_hf_folder(folder: Path, max_context: int | None = None) -> tuple[MatFormerLM, Tokenizer, dict]:
    """(model, tokenizer, provenance) of a Hugging Face Llama folder."""
    folder = Path(folder)
    cfg = read_config(folder)
    L = int(cfg["num_hidden_layers"])
    sizes = cfg["intermediate_size"]
    sizes = [int(s) for s in sizes] if isinstance(sizes, list) else [int(sizes)] * L
    if len(sizes) != L:
        raise ImportFailed(f"{str(folder)!r}: intermediate_size lists {len(sizes)} layers, num_hidden_layers is {L}")
    theta = cfg.get("rope_theta", (cfg.get("rope_parameters") or {}).get("rope_theta", 10000.0))
    config = dense_config(vocab_size=int(cfg["vocab_size"]), d_model=int(cfg["hidden_size"]), n_layers=L,
                          n_heads=int(cfg["num_attention_heads"]),
                          n_kv_heads=int(cfg.get("num_key_value_heads") or cfg["num_attention_heads"]),
                          ffn_sizes=sizes, rope_base=theta, norm_eps=cfg.get("rms_norm_eps", 1e-6),
                          tie_embeddings=cfg.get("tie_word_embeddings", False),
                          context=cfg.get("max_position_embeddings"), max_context=max_context, source=str(folder))
    state = rename(read_weights(folder), L)
    tokenizer = read_tokenizer(folder)
    if config.tie_embeddings:
        state.pop("lm_head.weight", None)  # some exports store the tied copy too
    model = build_model(config, state, str(folder))
    return model, tokenizer, {"format": "hf", "architecture": (cfg.get("architectures") or ["LlamaForCausalLM"])[0],
                              "dtype": str(next(iter(state.values())).dtype).replace("torch.", "")}
