"""Export-only decoding wrappers: ``prefill`` and ``decode`` with a static KV cache.

The model file stays clean (style: export-only variants live apart from the model). These
wrappers reuse a *dense* ``MatFormerLM``'s modules (norms, projections, FFNs, embedding) and add
what an on-device artifact needs: a KV cache of ``context`` positions and two entry points.

    prefill(tokens[1, T])               -> logits[1, T, V]   fills cache positions [0, T)
    decode(token[1, 1], position[1])    -> logits[1, 1, V]   writes cache[position], attends [0, position]

Two cache strategies (a backend picks one, see exporters/*.py):

* ``"buffers"``: the cache is a set of mutable buffers updated in place (ExecuTorch keeps them in
  the program and shares them between methods).
* ``"io"``: the cache is explicit: ``prefill`` returns it, ``decode`` takes and returns it
  (LiteRT silently drops in-place buffer writes; coremltools 9 fails to convert them to Core ML
  states from this graph, see exporters/coreml.py).

Prompts shorter than T: right-pad with <pad>, read the logits at index len-1, then decode from
position len. Causal attention makes the real positions exact; the padded cache slots are
masked until ``decode`` overwrites them.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from edge.model import MatFormerLM

MASK_VALUE = -3.0e4  # additive mask; finite and inside fp16 range (Core ML fp16, palettization)
STRATEGIES = ("buffers", "io")


class KVCore(nn.Module):
    """Shared maths of prefill and decode over a dense model (no spec, no in-graph slices).

    Numerically the model's forward, rewritten from ops that XNNPACK delegates (one partition
    boundary less per op): RMSNorm's mean as a matmul with a (1, d) row of 1/d, RoPE halves as
    slices (``chunk`` is not delegated), and attention as explicit matmuls with grouped KV heads
    folded into the query rows instead of ``repeat_interleave`` (no K/V copies per step).
    """

    def __init__(self, model: MatFormerLM, context: int, prefill_len: int):
        super().__init__()
        cfg = model.config
        if context > cfg.max_context:
            raise ValueError(f"context {context} exceeds the model's max_context {cfg.max_context}")
        self.model = model
        self.context, self.prefill_len = context, prefill_len
        self.n_layers, self.n_heads, self.n_kv, self.hd = cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.rep = self.n_heads // self.n_kv  # query heads per KV head
        self.scale = 1.0 / math.sqrt(self.hd)
        # RoPE tables for the artifact's context only: (context, hd/2)
        self.register_buffer("cos", model.rope_cos[:context].clone(), persistent=False)
        self.register_buffer("sin", model.rope_sin[:context].clone(), persistent=False)
        self.register_buffer("mean_row", torch.full((1, cfg.d_model), 1.0 / cfg.d_model), persistent=False)
        # eps as a (1,) tensor: Core ML's fuse_linear_bias pass fails on a 0-d bias after a linear
        self.register_buffer("eps_t", torch.full((1,), cfg.norm_eps), persistent=False)
        # Prefill causal mask over its T positions, rows repeated per query head of a group:
        # row r*T + t belongs to query t of the r-th head sharing a KV head. (1, rep*T, T)
        T = prefill_len
        causal = torch.full((T, T), MASK_VALUE).triu(1)
        self.register_buffer("prefill_mask", causal.repeat(self.rep, 1)[None], persistent=False)

    def cache_shape(self) -> tuple[int, int, int, int]:
        """Shape of one layer's K (or V) cache: (1, n_kv_heads, context, head_dim)."""
        return (1, self.n_kv, self.context, self.hd)

    def norm(self, norm: nn.Module, x):
        """RMSNorm of x (1, T, d); the mean of squares as a matmul: (1, T, d) @ (d, 1)."""
        ms = F.linear(x * x, self.mean_row)  # (1, T, 1)
        return x * torch.rsqrt(ms + self.eps_t) * norm.weight

    def rope(self, x, cos, sin):
        """Rotate pairs (first half, second half) of x (1, h, T, hd); cos/sin (T, hd/2)."""
        half = self.hd // 2
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)

    def qkv(self, block, x, cos, sin):
        """x (1, T, d) -> q (1, Hkv, rep*T, hd) grouped by KV head, k and v (1, Hkv, T, hd)."""
        B, T, _ = x.shape
        a = block.attn
        h = self.norm(block.attn_norm, x)
        q = a.wq(h).view(B, T, self.n_heads, self.hd).transpose(1, 2)  # (1, H, T, hd)
        k = a.wk(h).view(B, T, self.n_kv, self.hd).transpose(1, 2)
        v = a.wv(h).view(B, T, self.n_kv, self.hd).transpose(1, 2)
        q = self.rope(q, cos, sin) * self.scale
        # Query head j*rep + r uses KV head j (repeat_interleave order): group them as rows.
        q = q.reshape(B, self.n_kv, self.rep * T, self.hd)
        return q, self.rope(k, cos, sin), v

    def finish(self, block, x, q, k, v, mask):
        """Attention of q (1, Hkv, rep*T, hd) over k/v (1, Hkv, S, hd) + mask (1, rep*T or 1, S),
        then the output projection, the residual and the FFN."""
        B, T = x.shape[:2]
        # 3-D bmm over the Hkv groups (batch is 1): 4-D matmul lowers with an expand copy of K/V.
        G, S = self.n_kv, k.shape[2]
        q3 = q.reshape(G, self.rep * T, self.hd)  # reshape, not q[0]: select_copy is not delegated
        k3, v3 = k.reshape(G, S, self.hd), v.reshape(G, S, self.hd)
        att = torch.softmax(torch.bmm(q3, k3.transpose(1, 2)) + mask, dim=-1)  # (Hkv, rep*T, S)
        y = torch.bmm(att, v3).reshape(B, self.n_heads, T, self.hd)  # back to (1, H, T, hd)
        x = x + block.attn.wo(y.transpose(1, 2).reshape(B, T, -1))
        return x + block.ffn(self.norm(block.ffn_norm, x))

    def head(self, x):
        """Final norm and (tied) projection to logits (1, T, V)."""
        return self.model.head(self.norm(self.model.norm, x))

    def prefill_layers(self, tokens):
        """tokens (1, T) -> logits (1, T, V) and per-layer k, v (1, Hkv, T, hd)."""
        T = tokens.shape[1]
        cos, sin = self.cos[:T], self.sin[:T]
        x = self.model.tok_emb(tokens)
        ks, vs = [], []
        for block in self.model.layers:
            q, k, v = self.qkv(block, x, cos, sin)
            x = self.finish(block, x, q, k, v, self.prefill_mask)  # only the T new positions exist yet
            ks.append(k)
            vs.append(v)
        return self.head(x), ks, vs

    def decode_inputs(self, token, position):
        """Embedding (1, 1, d), RoPE rows (1, hd/2), additive mask (1, 1, C), one-hot (1, 1, C, 1)."""
        cos = self.cos.index_select(0, position)
        sin = self.sin.index_select(0, position)
        slots = torch.arange(self.context, dtype=position.dtype)  # (C,)
        mask = torch.where(slots <= position, 0.0, MASK_VALUE).view(1, 1, self.context)
        onehot = (slots == position).view(1, 1, self.context, 1)
        return self.model.tok_emb(token), cos, sin, mask, onehot


class BufferCacheLM(nn.Module):
    """KV cache as mutable buffers ``k_cache_{i}``/``v_cache_{i}`` (1, Hkv, C, hd), updated in place."""

    def __init__(self, model: MatFormerLM, context: int, prefill_len: int):
        super().__init__()
        self.core = KVCore(model, context, prefill_len)
        for i in range(self.core.n_layers):
            self.register_buffer(f"k_cache_{i}", torch.zeros(self.core.cache_shape()))
            self.register_buffer(f"v_cache_{i}", torch.zeros(self.core.cache_shape()))

    def caches(self, i: int):
        return getattr(self, f"k_cache_{i}"), getattr(self, f"v_cache_{i}")

    def prefill(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (1, T) int -> logits (1, T, V); cache slots [0, T) overwritten."""
        T = tokens.shape[1]
        logits, ks, vs = self.core.prefill_layers(tokens)
        for i, (k, v) in enumerate(zip(ks, vs)):
            kc, vc = self.caches(i)
            kc[:, :, :T].copy_(k)
            vc[:, :, :T].copy_(v)
        return logits

    def decode(self, token: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """token (1, 1) int, position (1,) int -> logits (1, 1, V); cache slot `position` written."""
        core = self.core
        x, cos, sin, mask, _ = core.decode_inputs(token, position)
        for i, block in enumerate(core.model.layers):
            q, k, v = core.qkv(block, x, cos, sin)
            kc, vc = self.caches(i)
            kc.index_copy_(2, position.long(), k)  # (1, Hkv, C, hd) <- (1, Hkv, 1, hd) at slot `position`
            vc.index_copy_(2, position.long(), v)
            x = core.finish(block, x, q, kc, vc, mask)
        return core.head(x)


class IOCacheLM(nn.Module):
    """KV cache as explicit tensors: k_cache, v_cache of shape (L, Hkv, C, hd) in and out."""

    def __init__(self, model: MatFormerLM, context: int, prefill_len: int):
        super().__init__()
        self.core = KVCore(model, context, prefill_len)

    def cache_shape(self) -> tuple[int, int, int, int]:
        c = self.core
        return (c.n_layers, c.n_kv, c.context, c.hd)

    def prefill(self, tokens: torch.Tensor):
        """tokens (1, T) -> logits (1, T, V), k_cache, v_cache (L, Hkv, C, hd); slots >= T are zero."""
        T = tokens.shape[1]
        logits, ks, vs = self.core.prefill_layers(tokens)
        pad = (0, 0, 0, self.core.context - T)  # zero-fill slots [T, C) of the context axis
        k_cache = torch.cat([F.pad(k, pad) for k in ks], dim=0)  # (L, Hkv, C, hd)
        v_cache = torch.cat([F.pad(v, pad) for v in vs], dim=0)
        return logits, k_cache, v_cache

    def decode(self, token, position, k_cache, v_cache):
        """token (1, 1), position (1,), caches (L, Hkv, C, hd) -> logits (1, 1, V), new caches."""
        core = self.core
        x, cos, sin, mask, onehot = core.decode_inputs(token, position)
        new_k, new_v = [], []
        for i, block in enumerate(core.model.layers):
            q, k, v = core.qkv(block, x, cos, sin)
            # Blend instead of scatter: elementwise ops every backend delegates. (1, Hkv, C, hd)
            kc = torch.where(onehot, k, k_cache[i:i + 1])
            vc = torch.where(onehot, v, v_cache[i:i + 1])
            x = core.finish(block, x, q, kc, vc, mask)
            new_k.append(kc)
            new_v.append(vc)
        logits = core.head(x)
        return logits, torch.cat(new_k, dim=0), torch.cat(new_v, dim=0)


class Prefill(nn.Module):
    """``forward(tokens)`` = the wrapper's prefill (exporters trace ``forward``; names become input names)."""

    def __init__(self, wrapper: nn.Module):
        super().__init__()
        self.wrapper = wrapper

    def forward(self, tokens):
        return self.wrapper.prefill(tokens)


class Decode(nn.Module):
    """``forward(token, position)`` = the wrapper's decode with its cache in buffers."""

    def __init__(self, wrapper: nn.Module):
        super().__init__()
        self.wrapper = wrapper

    def forward(self, token, position):
        return self.wrapper.decode(token, position)


class DecodeIO(Decode):
    """``forward(token, position, k_cache, v_cache)`` = decode with an explicit cache."""

    def forward(self, token, position, k_cache, v_cache):
        return self.wrapper.decode(token, position, k_cache, v_cache)


def entry_modules(wrapper: nn.Module) -> dict[str, nn.Module]:
    """{"prefill": module, "decode": module}, each exposing one entry point as ``forward``."""
    return {"prefill": Prefill(wrapper),
            "decode": DecodeIO(wrapper) if isinstance(wrapper, IOCacheLM) else Decode(wrapper)}


def make_wrapper(model: MatFormerLM, context: int, strategy: str, prefill_len: int) -> nn.Module:
    """A cache wrapper over a copy of a dense model, in eval mode with frozen parameters."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown cache strategy {strategy!r} (allowed: {STRATEGIES})")
    if not 1 <= prefill_len <= context:
        raise ValueError(f"prefill length {prefill_len} must be in [1, context={context}]")
    model = copy.deepcopy(model).eval().requires_grad_(False)  # an exported step with grad-requiring params misbehaves
    cls = BufferCacheLM if strategy == "buffers" else IOCacheLM
    return cls(model, context, prefill_len).eval()


def example_inputs(wrapper: nn.Module, prefill_len: int, token_dtype=torch.int64) -> dict[str, tuple]:
    """Example arguments for each entry point, with the artifact's static shapes."""
    tokens = torch.zeros(1, prefill_len, dtype=token_dtype)
    token = torch.zeros(1, 1, dtype=token_dtype)
    position = torch.tensor([prefill_len], dtype=token_dtype)
    decode = (token, position)
    if isinstance(wrapper, IOCacheLM):
        shape = wrapper.cache_shape()
        decode = decode + (torch.zeros(shape), torch.zeros(shape))
    return {"prefill": (tokens,), "decode": decode}


def entry_points(wrapper: nn.Module, prefill_len: int, token_dtype: str = "int64") -> dict:
    """The exact signatures of ``prefill`` and ``decode`` for the metadata JSON.

    Inputs are listed in call order; a generic runner builds them from name, shape and dtype.
    """
    from exporters.base import tensor_spec

    core = wrapper.core
    V, T = core.model.config.vocab_size, prefill_len
    prefill_in = [tensor_spec("tokens", (1, T), token_dtype)]
    decode_in = [tensor_spec("token", (1, 1), token_dtype), tensor_spec("position", (1,), token_dtype)]
    prefill_out = [tensor_spec("logits", (1, T, V), "float32")]
    decode_out = [tensor_spec("logits", (1, 1, V), "float32")]
    if isinstance(wrapper, IOCacheLM):
        def caches():  # fresh dicts for each list: backends annotate them per entry point
            return [tensor_spec(n, wrapper.cache_shape(), "float32") for n in ("k_cache", "v_cache")]
        prefill_out += caches()
        decode_in += caches()
        decode_out += caches()
        state = []
    else:
        state = [tensor_spec(f"{kv}_cache_{i}", core.cache_shape(), "float32")
                 for i in range(core.n_layers) for kv in ("k", "v")]
    return {
        "prefill": {"inputs": prefill_in, "outputs": prefill_out, "state": state,
                    "doc": "tokens (1, T): right-pad short prompts with <pad>; logits for every position; "
                           "fills cache slots [0, T)"},
        "decode": {"inputs": decode_in, "outputs": decode_out, "state": state,
                   "doc": "one token at `position` (< context); writes cache slot `position`, "
                          "attends to slots [0, position]"
                          + ("; pass the caches from the previous call and keep the returned ones"
                             if isinstance(wrapper, IOCacheLM) else "")},
    }
