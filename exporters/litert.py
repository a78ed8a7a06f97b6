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


def decode_windows(context: int) -> list[int]:
    """Attention windows of the extra ``decode_w<N>`` signatures: C/8, C/4 and C/2, at least 32.

    Decode reads every cache slot it attends to; at SmolLM2's C = 2,048 that is 94 MB per token,
    more than its fp32 S weights. A runner decoding at position p uses the smallest window > p
    (the same logits: slots past p are masked anyway). LiteRT-LM's Engine uses ``decode``.
    """
    return sorted({w for w in (max(32, context >> k) for k in (3, 2, 1)) if w < context})


def window_sizes(signatures, prefix: str) -> list[int]:
    """The windows N of the signatures named ``<prefix><N>`` (``decode_w``, an elastic member's
    ``decode_<m>_w``), smallest first."""
    return sorted(int(n[len(prefix):]) for n in signatures if n.startswith(prefix) and n[len(prefix):].isdigit())


def _convert(model, precision: str, out_path: Path, context: int, prefill_lens: list[int]) -> None:
    import torch

    litert_torch = require("litert_torch", EXTRA, "the LiteRT exporter")
    from exporters.litert_lm import frozen, sample_kwargs, signature_graphs

    kwargs = {}
    if precision == "int8":
        from litert_torch.generative.quantize import quant_recipes

        # QuantConfig(pt2e_quantizer=...) silently does nothing in litert-torch 0.10; recipes work.
        kwargs["quant_config"] = quant_recipes.full_dynamic_recipe()
    with torch.no_grad(), frozen(model):
        conv = litert_torch
        for name, graph, T in signature_graphs(model, context, prefill_lens, decode_windows(context)):
            # one traced signature per entry point; the converter stores shared weights once
            conv = conv.signature(name, graph, sample_kwargs=sample_kwargs(graph, T))
        conv.convert(**kwargs).export(str(out_path))


def entry_points(model, context: int, prefill_lens: list[int], windows: list[int] | None = None) -> dict:
    """Every signature's inputs and outputs (LiteRT-LM names) for the metadata JSON; ``windows``
    the ``decode_w<N>`` ones (None: decode_windows(context))."""
    from exporters.litert_lm import cache_names

    cfg = model.config
    hkv, hd = cfg.n_kv_heads, cfg.head_dim
    caches = [tensor_spec(n, (1, hkv, context, hd) if "_k_" in n else (1, hkv, hd, context), "float32")
              for n in cache_names(cfg.n_layers)]

    def sig(T, logits, W=context):
        ins = [tensor_spec("tokens", (1, T), "int32"), tensor_spec("input_pos", (T,), "int32"),
               tensor_spec("mask", (1, 1, T, W), "float32"), *caches]
        outs = ([tensor_spec("logits", (1, T, cfg.vocab_size), "float32")] if logits else []) + caches
        return {"inputs": ins, "outputs": outs, "state": []}

    eps = {f"prefill_{T}": {**sig(T, False), "doc": f"{T} tokens at input_pos (consecutive); writes their "
                            "K/V into the caches at input_pos[0]; right-pad a shorter chunk"} for T in prefill_lens}
    eps["decode"] = {**sig(1, True), "doc": "one token at input_pos[0]; writes its K/V there; logits (1, 1, V)"}
    for W in decode_windows(context) if windows is None else windows:
        eps[f"decode_w{W}"] = {**sig(1, True, W), "doc": f"decode attending to cache slots 0..{W - 1} only "
                               f"(input_pos[0] < {W}); the same result as decode there, at less cost"}
    for ep in eps.values():
        ep["doc"] += (f"; mask row t: 0 for slots <= input_pos[t], {MASK_VALUE:g} elsewhere; "
                      "pass the caches returned by the previous call (or bind one buffer as input and output)")
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
            "decode_windows": decode_windows(context),
            "convention": "LiteRT-LM (prefill_<T>/decode; tokens, input_pos, mask, kv_cache_k_<i>, kv_cache_v_<i>)",
            "extra_files": {"litertlm": bundle},
            "delegate": "XNNPACK (LiteRT default CPU delegate)",
            "libraries": library_versions("litert-torch", "ai-edge-litert", "litert-lm-builder"),
            "quantization": "litert_torch quant_recipes.full_dynamic_recipe()" if precision == "int8" else "none"}


class LiteRTRunner:
    """Runs a .tflite in LiteRT-LM's convention on ``ai_edge_litert`` (exporters/litert_session.py:
    caches updated in place, packed weights shared by all signatures).

    ``forward(tokens, start)`` feeds all but the last token through ``prefill_<T>`` (chunks, the
    last one right-padded) and the last through a decode signature, as LiteRT-LM does, and returns
    that token's logits (1, 1, V); ``prefill(tokens)`` is ``forward(tokens, 0)``; ``decode(token,
    position)`` -> logits (1, 1, V) through the smallest ``decode_w<N>`` whose window holds the
    position (``decode`` past the last window).
    """

    label = "ai_edge_litert CompiledModel (XNNPACK)"

    def __init__(self, path: Path, meta: dict | None = None, threads: int | None = None):
        from exporters.litert_session import LiteRTSession

        self.session = LiteRTSession(path, threads)
        sigs = self.session.signatures
        self.prefills = sorted(int(n.split("_")[1]) for n in sigs if n.startswith("prefill_"))
        self.windows = window_sizes(sigs, "decode_w")
        self.context = int(self.session.inputs("decode")["mask"]["shape"][-1])

    def reset(self) -> None:
        """Empty the caches (a new conversation)."""
        self.session.reset()

    def decode_signature(self, position: int) -> str:
        """The cheapest decode whose attention window holds slot ``position``."""
        return next((f"decode_w{W}" for W in self.windows if position < W), "decode")

    def feed(self, tokens, start: int) -> None:
        """Write the K/V of ``tokens`` (1, n) at positions start.. through the prefill signatures."""
        tokens = np.asarray(tokens, dtype=np.int32).reshape(-1)
        i, n = 0, tokens.shape[0]
        while i < n:
            fits = [T for T in self.prefills if start + i + T <= self.context]
            if not fits:  # a full chunk would run past the cache end: one token at a time
                self.decode(int(tokens[i]), start + i)
                i += 1
                continue
            T = next((T for T in fits if T >= n - i), fits[-1])
            chunk = tokens[i:i + T]
            pad = np.zeros(T - chunk.shape[0], np.int32)  # padded slots are overwritten later
            self.session.call(f"prefill_{T}", np.concatenate([chunk, pad]), start + i)
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
        return self.session.call(self.decode_signature(position), np.array([token], np.int32), position)

    def close(self) -> None:
        """Release the runtime and its weight-cache file."""
        self.session.close()


_threads: int | None = None  # set_threads(n): the default of runners made after it (None: up to 2)


def set_threads(n: int) -> None:
    """Threads of the LiteRT runners made from now on (as executorch.set_threads sizes its pool)."""
    global _threads
    _threads = n


def load_runner(path: Path, meta: dict | None = None) -> LiteRTRunner:
    """A runner on the real LiteRT runtime."""
    return LiteRTRunner(path, meta, threads=_threads)
