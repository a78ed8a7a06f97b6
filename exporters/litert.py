"""LiteRT: a ``.tflite`` in LiteRT-LM's signature convention, packed as a ``.litertlm`` beside it.

Signatures (exporters/litert_lm.py): ``prefill_<T>`` and ``decode`` over ``tokens``,
``input_pos``, ``mask`` and per-layer caches ``kv_cache_k_<i>`` / ``kv_cache_v_<i>`` passed in and
returned updated (LiteRT silently drops in-place buffer writes, so caches are explicit tensors).
The ``.litertlm`` (exporters/litertlm_bundle.py) is what LiteRT-LM's ``Engine`` and Google's apps
open; the bare ``.tflite`` stays for LiteRT.js and the Interpreter API. Precisions: ``fp32`` and
``int8`` (litert-torch's dynamic-range recipe: int8 weights, activations quantized on the fly).
Executed here with ``ai_edge_litert`` (XNNPACK by default) and with LiteRT-LM's ``Engine``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from exporters.backends import BACKENDS
from exporters.base import library_versions, require, tensor_spec

BACKEND = BACKENDS["litert"]  # the registry record: the one place its names and precisions live
PRECISIONS = BACKEND.precisions
SUFFIX = BACKEND.suffix
EXTRA = BACKEND.extra
CACHE = "io"
MASK_VALUE = -3.0e4  # additive mask for slots a query must not see (as exporters.decoding)


def check(model, precision: str) -> None:
    """Nothing model-specific to reject: every dense spec converts."""


def _convert(model, precision: str, out_path: Path, context: int, prefill_lens: list[int]) -> None:
    import torch

    litert_torch = require("litert_torch", EXTRA, "the LiteRT exporter")
    from exporters.litert_lm import make_graph, sample_kwargs

    prefill, decode = make_graph(model, context, logits=False), make_graph(model, context, logits=True)
    kwargs = {}
    if precision == "int8":
        from litert_torch.generative.quantize import quant_recipes

        # QuantConfig(pt2e_quantizer=...) silently does nothing in litert-torch 0.10; recipes work.
        kwargs["quant_config"] = quant_recipes.full_dynamic_recipe()
    with torch.no_grad():
        conv = None
        for T in prefill_lens:  # one traced signature per prompt length; weights are shared
            sign = litert_torch.signature if conv is None else conv.signature
            conv = sign(f"prefill_{T}", prefill, sample_kwargs=sample_kwargs(prefill, T))
        conv = conv.signature("decode", decode, sample_kwargs=sample_kwargs(decode, 1))
        conv.convert(**kwargs).export(str(out_path))


def entry_points(model, context: int, prefill_lens: list[int]) -> dict:
    """Every signature's inputs and outputs (LiteRT-LM names) for the metadata JSON."""
    from exporters.litert_lm import cache_names

    cfg = model.config
    hkv, hd = cfg.n_kv_heads, cfg.head_dim
    caches = [tensor_spec(n, (1, hkv, context, hd) if "_k_" in n else (1, hkv, hd, context), "float32")
              for n in cache_names(cfg.n_layers)]

    def sig(T, logits):
        ins = [tensor_spec("tokens", (1, T), "int32"), tensor_spec("input_pos", (T,), "int32"),
               tensor_spec("mask", (1, 1, T, context), "float32"), *caches]
        outs = ([tensor_spec("logits", (1, T, cfg.vocab_size), "float32")] if logits else []) + caches
        return {"inputs": ins, "outputs": outs, "state": []}

    eps = {f"prefill_{T}": {**sig(T, False), "doc": f"{T} tokens at input_pos (consecutive); writes their "
                            "K/V into the caches at input_pos[0]; right-pad a shorter chunk"} for T in prefill_lens}
    eps["decode"] = {**sig(1, True), "doc": "one token at input_pos[0]; writes its K/V there; logits (1, 1, V)"}
    for ep in eps.values():
        ep["doc"] += (f"; mask row t: 0 for slots <= input_pos[t], {MASK_VALUE:g} elsewhere; "
                      "pass the caches returned by the previous call")
    return eps


def export(model, precision: str, out_path: Path, *, context: int, prefill_len: int, tokenizer=None) -> dict:
    """Write ``out_path`` (.tflite) and ``<stem>.litertlm`` beside it; return metadata.

    ``tokenizer`` (edge.tokenizer.Tokenizer; default: the byte tokenizer) is packed into the
    .litertlm with its start/stop tokens and chat template.
    """
    from edge.tokenizer import byte_tokenizer
    from exporters import litertlm_bundle

    out_path = Path(out_path)
    tokenizer = tokenizer or byte_tokenizer()
    prefill_lens = [prefill_len]
    _convert(model, precision, out_path, context, prefill_lens)
    bundle = out_path.with_suffix(".litertlm")
    tok_dir = out_path.with_name(f".{out_path.name}.tokenizer")
    tok_dir.mkdir(exist_ok=True)
    try:
        tokenizer.save(tok_dir)
        litertlm_bundle.pack(out_path, tok_dir / "tokenizer.json", tokenizer, bundle, max_tokens=context)
    finally:
        for p in tok_dir.iterdir():
            p.unlink()
        tok_dir.rmdir()
    return {"entry_points": entry_points(model, context, prefill_lens), "cache": CACHE,
            "convention": "LiteRT-LM (prefill_<T>/decode; tokens, input_pos, mask, kv_cache_k_<i>, kv_cache_v_<i>)",
            "extra_files": {"litertlm": bundle},
            "delegate": "XNNPACK (LiteRT default CPU delegate)",
            "libraries": library_versions("litert-torch", "ai-edge-litert", "litert-lm-builder"),
            "quantization": "litert_torch quant_recipes.full_dynamic_recipe()" if precision == "int8" else "none"}


class LiteRTRunner:
    """Runs a .tflite in LiteRT-LM's convention with ``ai_edge_litert``; keeps the caches.

    ``forward(tokens, start)`` feeds all but the last token through ``prefill_<T>`` (chunks, the
    last one right-padded) and the last through ``decode``, as LiteRT-LM does, and returns that
    token's logits (1, 1, V); ``prefill(tokens)`` is ``forward(tokens, 0)``; ``decode(token,
    position)`` -> logits (1, 1, V).
    """

    label = "ai_edge_litert Interpreter (XNNPACK)"

    def __init__(self, path: Path, meta: dict | None = None, threads: int | None = None):
        require("ai_edge_litert", EXTRA, "running a .tflite")
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(model_path=str(path), num_threads=threads or min(2, os.cpu_count() or 1))
        sigs = self.interp.get_signature_list()
        self.decode_r = self.interp.get_signature_runner("decode")
        self.prefills = {int(n.split("_")[1]): self.interp.get_signature_runner(n)
                         for n in sigs if n.startswith("prefill_")}
        details = self.decode_r.get_input_details()
        self.context = int(details["mask"]["shape"][-1])
        self.caches = {n: np.zeros(d["shape"], np.float32) for n, d in details.items() if n.startswith("kv_cache_")}

    def reset(self) -> None:
        """Empty the caches (a new conversation)."""
        for c in self.caches.values():
            c[...] = 0.0

    def _mask(self, positions: np.ndarray) -> np.ndarray:
        """(1, 1, T, C): row t sees slots <= positions[t]."""
        slots = np.arange(self.context)[None, :]
        return np.where(slots <= positions[:, None], 0.0, MASK_VALUE).astype(np.float32)[None, None]

    def _run(self, runner, tokens: np.ndarray, start: int) -> dict:
        pos = np.arange(start, start + tokens.shape[1], dtype=np.int32)
        out = runner(tokens=tokens.astype(np.int32), input_pos=pos, mask=self._mask(pos), **self.caches)
        self.caches = {n: out[n] for n in self.caches}
        return out

    def feed(self, tokens, start: int) -> None:
        """Write the K/V of ``tokens`` (1, n) at positions start.. through the prefill signatures."""
        tokens = np.asarray(tokens, dtype=np.int32).reshape(1, -1)
        i, n = 0, tokens.shape[1]
        while i < n:
            fits = [T for T in sorted(self.prefills) if start + i + T <= self.context]
            if not fits:  # a full chunk would run past the cache end: one token at a time
                self._run(self.decode_r, tokens[:, i:i + 1], start + i)
                i += 1
                continue
            T = next((T for T in fits if T >= n - i), fits[-1])
            chunk = tokens[:, i:i + T]
            pad = np.zeros((1, T - chunk.shape[1]), np.int32)  # padded slots are overwritten later
            self._run(self.prefills[T], np.concatenate([chunk, pad], axis=1), start + i)
            i += T

    def forward(self, tokens, start: int) -> np.ndarray:
        """Tokens (1, n) at positions start.. (a new conversation at 0, a later turn after it):
        the last one's logits (1, 1, V); the caches keep everything before."""
        tokens = np.asarray(tokens).reshape(1, -1)
        if start == 0:
            self.reset()
        if tokens.shape[1] > 1:
            self.feed(tokens[:, :-1], start)
        return self.decode(int(tokens[0, -1]), start + tokens.shape[1] - 1)

    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        return self.forward(tokens, 0)

    def decode(self, token: int, position: int) -> np.ndarray:
        return self._run(self.decode_r, np.array([[token]], dtype=np.int32), position)["logits"]


def load_runner(path: Path, meta: dict | None = None) -> LiteRTRunner:
    """A runner on the real LiteRT interpreter."""
    return LiteRTRunner(path, meta)
