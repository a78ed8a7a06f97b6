"""The universal MatFormer language model: a Llama-style decoder whose every FFN is nested.

Granularity i of layer l uses the first m_i hidden units of that layer's SwiGLU FFN:
``W_gate[:m_i]``, ``W_up[:m_i]`` and ``W_down[:, :m_i]``. Attention, norms and embeddings are
shared by every granularity. The active width is an argument of ``forward`` (a per-layer spec),
never global state, so a sliced dense model (edge.slicing) is just this class with per-layer
``ffn_sizes`` and no spec.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edge.config import MatFormerConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 for stability, return in the input dtype.
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.to(x.dtype) * self.weight


def rope_tables(head_dim: int, max_context: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (max_context, head_dim // 2) for rotary position embeddings."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(max_context, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (first half, second half) of x: (B, H, T, hd); cos/sin: (T, hd/2)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class KVCache:
    """Keys and values of every layer for one sequence: (n_layers, 1, Hkv, max_len, hd) each.

    ``length`` is the number of leading positions that hold valid K/V; positions past it are
    scratch that the next forward overwrites (that is how speculative drafts are rolled back).
    """

    def __init__(self, model: "MatFormerLM", max_len: int | None = None):
        c = model.config
        self.max_len = max_len or c.max_context
        if self.max_len > c.max_context:
            raise ValueError(f"cache of {self.max_len} positions exceeds max_context={c.max_context}")
        dtype = model.tok_emb.weight.dtype
        shape = (c.n_layers, 1, c.n_kv_heads, self.max_len, c.head_dim)
        self.k = torch.zeros(shape, dtype=dtype)
        self.v = torch.zeros(shape, dtype=dtype)
        self.length = 0

    def truncate(self, length: int) -> None:
        """Forget positions >= length (they become scratch)."""
        self.length = min(self.length, length)


class Attention(nn.Module):
    """Causal self-attention with optional grouped KV heads (n_kv_heads <= n_heads) and an
    optional KV cache (generation: the new tokens attend to the cached prefix and themselves)."""

    def __init__(self, config: MatFormerConfig):
        super().__init__()
        d, hd = config.d_model, config.head_dim
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, hd
        self.wq = nn.Linear(d, config.n_heads * hd, bias=False)
        self.wk = nn.Linear(d, config.n_kv_heads * hd, bias=False)
        self.wv = nn.Linear(d, config.n_kv_heads * hd, bias=False)
        self.wo = nn.Linear(config.n_heads * hd, d, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None = None,
                layer: int = 0) -> torch.Tensor:
        """x (B, T, d) at positions [start, start+T) -> (B, T, d); cos/sin (T, hd/2) of those positions.

        Without a cache start is 0 and attention is causal over x alone. With one (B = 1), this
        layer's K/V are written to cache slots [start, start+T), start = ``cache.length``, and the
        queries attend to slots [0, start+T)."""
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, hd)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        mask, causal = None, True
        if cache is not None:
            start = cache.length
            end = start + T
            cache.k[layer, :, :, start:end] = k
            cache.v[layer, :, :, start:end] = v
            k, v = cache.k[layer, :, :, :end], cache.v[layer, :, :, :end]  # (1, Hkv, end, hd)
            causal = False
            if T > 1:  # query i (position start+i) sees keys 0..start+i; a single query sees everything
                mask = torch.arange(end)[None, :] <= (start + torch.arange(T))[:, None]  # (T, end) bool
        if self.n_kv_heads != self.n_heads:  # each KV head serves n_heads / n_kv_heads queries
            rep = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)  # (B, H, T, hd)
        return self.wo(y.transpose(1, 2).reshape(B, T, -1))


class NestedFFN(nn.Module):
    """SwiGLU FFN whose first m hidden units form a smaller FFN (the MatFormer nesting)."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.d_ff = d_ff
        self.w_gate = nn.Linear(d_model, d_ff, bias=False)  # weight (d_ff, d)
        self.w_up = nn.Linear(d_model, d_ff, bias=False)  # weight (d_ff, d)
        self.w_down = nn.Linear(d_ff, d_model, bias=False)  # weight (d, d_ff)

    def forward(self, x: torch.Tensor, m: int | None = None) -> torch.Tensor:
        if m is None or m == self.d_ff:  # full width: plain modules, nothing sliced in the graph
            return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))
        h = F.silu(F.linear(x, self.w_gate.weight[:m])) * F.linear(x, self.w_up.weight[:m])
        return F.linear(h, self.w_down.weight[:, :m])


class Block(nn.Module):
    def __init__(self, config: MatFormerConfig, d_ff: int):
        super().__init__()
        self.attn_norm = RMSNorm(config.d_model, config.norm_eps)
        self.attn = Attention(config)
        self.ffn_norm = RMSNorm(config.d_model, config.norm_eps)
        self.ffn = NestedFFN(config.d_model, d_ff)

    def forward(self, x, cos, sin, m: int | None = None, cache: KVCache | None = None, layer: int = 0):
        """x (B, T, d) -> (B, T, d); m: FFN width (None: all stored units); cache: see Attention."""
        x = x + self.attn(self.attn_norm(x), cos, sin, cache, layer)
        return x + self.ffn(self.ffn_norm(x), m)


class MatFormerLM(nn.Module):
    """Decoder-only LM. ``forward(tokens, spec)`` runs the submodel that ``spec`` names."""

    def __init__(self, config: MatFormerConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(Block(config, m) for m in config.layer_ffn_sizes())
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.lm_head = None if config.tie_embeddings else nn.Linear(config.d_model, config.vocab_size, bias=False)
        cos, sin = rope_tables(config.head_dim, config.max_context, config.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)  # (max_context, hd/2)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        # GPT-2 style: scale the residual-branch outputs by depth.
        for block in self.layers:
            for w in (block.attn.wo.weight, block.ffn.w_down.weight):
                nn.init.normal_(w, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def widths_for(self, spec: Sequence[str] | None) -> list[int | None]:
        """Per-layer FFN width for ``spec``; None means each layer's full stored width."""
        if spec is None:
            return [None] * self.config.n_layers
        if not self.config.is_universal:
            raise ValueError("a sliced dense model has fixed widths: call it without a spec")
        if len(spec) != self.config.n_layers:
            raise ValueError(f"spec has {len(spec)} layers, model has {self.config.n_layers}")
        widths = self.config.widths
        return [widths[g] for g in spec]

    def forward(self, tokens: torch.Tensor, spec: Sequence[str] | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        """tokens (B, T) int64 -> logits (B, T, vocab). spec: one granularity per layer.

        With a ``cache`` the tokens sit at positions [cache.length, +T): their K/V are cached under
        this spec and ``cache.length`` advances (generation; see edge.generate)."""
        return self.logits(self.hidden(self.tok_emb(tokens), spec, cache=cache))

    def hidden(self, x: torch.Tensor, spec: Sequence[str] | None = None, first: int = 0, last: int | None = None,
               cache: KVCache | None = None) -> torch.Tensor:
        """Residual stream x (B, T, d) through layers [first, last) at ``spec``'s widths -> (B, T, d).

        Evaluation reuses the stream after a shared prefix of layers (edge.evaluate.SpecScorer)."""
        T = x.shape[1]
        start = cache.length if cache is not None else 0
        end = start + T
        if cache is not None and end > cache.max_len:
            raise ValueError(f"decoding past the cache: {end} > {cache.max_len} positions")
        if end > self.config.max_context:
            raise ValueError(f"sequence of {T} tokens exceeds max_context={self.config.max_context}")
        cos, sin = self.rope_cos[start:end], self.rope_sin[start:end]  # (T, hd/2)
        last = self.config.n_layers if last is None else last
        widths = self.widths_for(spec)
        for i in range(first, last):
            x = self.layers[i](x, cos, sin, widths[i], cache, i)
        if cache is not None and last == self.config.n_layers:
            cache.length = end
        return x

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Final norm and projection of the residual stream (B, T, d) -> (B, T, vocab)."""
        return self.head(self.norm(x))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Final projection to vocabulary logits; tied to the embedding by default."""
        return self.lm_head(x) if self.lm_head is not None else F.linear(x, self.tok_emb.weight)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy; logits (B, T, V), targets (B, T)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
