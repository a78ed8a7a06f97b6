"""Import a GGUF file of the ``llama`` architecture (llama.cpp's format) with gguf-py.

Tensors are dequantized to fp32 with ``gguf.quants.dequantize``. llama.cpp's converter permutes
the rows of W_q and W_k so that RoPE rotates interleaved pairs (x0,x1),(x2,x3)...; edge.model
rotates (first half, second half) like Hugging Face, so the permutation is undone here. The
tokenizer is rebuilt from the file's metadata (edge.importers.gguf_tokenizer).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edge.importers.gguf_tokenizer import gguf_tokenizer
from edge.importers.llama import ImportFailed, build_model, dense_config
from edge.model import MatFormerLM
from edge.tokenizer import Tokenizer

SUPPORTED_ARCHITECTURES = ("llama",)
# Types gguf.quants dequantizes that llama.cpp uses for Llama weights.
SUPPORTED_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
                   "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")

# GGUF name (after "blk.{i}.") -> the project's name (after "layers.{i}.")
LAYER_NAMES = {"attn_norm.weight": "attn_norm.weight", "attn_q.weight": "attn.wq.weight",
               "attn_k.weight": "attn.wk.weight", "attn_v.weight": "attn.wv.weight",
               "attn_output.weight": "attn.wo.weight", "ffn_norm.weight": "ffn_norm.weight",
               "ffn_gate.weight": "ffn.w_gate.weight", "ffn_up.weight": "ffn.w_up.weight",
               "ffn_down.weight": "ffn.w_down.weight"}
TOP_NAMES = {"token_embd.weight": "tok_emb.weight", "output_norm.weight": "norm.weight",
             "output.weight": "lm_head.weight"}


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation: w (n_head * hd, d_in), pairs back to halves."""
    out, d_in = w.shape
    return w.reshape(n_head, out // n_head // 2, 2, d_in).swapaxes(1, 2).reshape(out, d_in)


def _field(reader, key: str, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def _open(path: Path):
    from gguf import GGUFReader

    try:
        return GGUFReader(str(path))
    except (ValueError, OSError, IndexError, KeyError) as e:
        raise ImportFailed(f"{str(path)!r} is not a readable GGUF file ({str(e)[:100]})") from None


def _dequantize(t) -> np.ndarray:
    """One tensor as fp32 in (out, in) row-major order (GGUF lists dims innermost first)."""
    from gguf.quants import dequantize

    w = dequantize(t.data, t.tensor_type)
    w = np.asarray(w, dtype=np.float32)
    if not w.flags.writeable:  # F32 tensors are views of the memory-mapped file
        w = w.copy()
    return w.reshape(tuple(int(n) for n in reversed(t.shape.tolist())))


def load_gguf(path: Path, max_context: int | None = None) -> tuple[MatFormerLM, Tokenizer, dict]:
    """(model, tokenizer, provenance) of a llama-architecture GGUF file."""
    path = Path(path)
    reader = _open(path)
    arch = _field(reader, "general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ImportFailed(f"{str(path)!r}: architecture {arch!r} is not supported (supported: "
                           f"{', '.join(SUPPORTED_ARCHITECTURES)})")
    types = sorted({t.tensor_type.name for t in reader.tensors})
    bad = [t for t in types if t not in SUPPORTED_TYPES]
    if bad:
        raise ImportFailed(f"{str(path)!r}: tensor type(s) {', '.join(bad)} not supported "
                           f"(supported: {', '.join(SUPPORTED_TYPES)})")
    k = lambda name, default=None: _field(reader, f"{arch}.{name}", default)  # noqa: E731
    L, d, H = int(k("block_count")), int(k("embedding_length")), int(k("attention.head_count"))
    Hkv = int(k("attention.head_count_kv", H))
    tensors = {t.name: t for t in reader.tensors}
    if "token_embd.weight" not in tensors:
        raise ImportFailed(f"{str(path)!r} has no token_embd.weight (not a complete llama model)")
    vocab = int(k("vocab_size", 0) or tensors["token_embd.weight"].shape[-1])
    sizes = [int(tensors[f"blk.{i}.ffn_gate.weight"].shape[-1]) if f"blk.{i}.ffn_gate.weight" in tensors
             else int(k("feed_forward_length")) for i in range(L)]
    if int(k("rope.dimension_count", d // H)) != d // H:
        raise ImportFailed(f"{str(path)!r}: partial RoPE (rope.dimension_count "
                           f"{k('rope.dimension_count')}) is not supported (supported: head_dim {d // H})")
    config = dense_config(vocab_size=vocab, d_model=d, n_layers=L, n_heads=H, n_kv_heads=Hkv, ffn_sizes=sizes,
                          rope_base=k("rope.freq_base", 10000.0), norm_eps=k("attention.layer_norm_rms_epsilon", 1e-5),
                          tie_embeddings="output.weight" not in tensors, context=k("context_length"),
                          max_context=max_context, source=str(path))
    tokenizer = gguf_tokenizer(reader, str(path))
    state = {}
    for name, t in tensors.items():
        w = _dequantize(t)
        if name.endswith("attn_q.weight"):
            w = unpermute(w, H)
        elif name.endswith("attn_k.weight"):
            w = unpermute(w, Hkv)
        parts = name.split(".", 2)  # blk, i, rest
        if name in TOP_NAMES:
            name = TOP_NAMES[name]
        elif parts[0] == "blk" and len(parts) == 3 and parts[2] in LAYER_NAMES:
            name = f"layers.{parts[1]}.{LAYER_NAMES[parts[2]]}"
        state[name] = torch.from_numpy(w)
    model = build_model(config, state, str(path))
    return model, tokenizer, {"format": "gguf", "architecture": arch, "tensor_types": types,
                              "name": _field(reader, "general.name")}
