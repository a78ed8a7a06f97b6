"""Export-only wrapper in the convention of ExecuTorch's LLM runner: one ``forward``.

    forward(tokens[1, T], input_pos[1]) -> logits[1, V]    T dynamic in [1, context - 1]

writes the KV cache at positions ``input_pos + arange(T)`` and attends to every position up to
them, so one method serves a prompt (T tokens at 0), a chunk of a longer prompt or a second turn
(T tokens at the current position) and a decode step (T = 1). The logits are those of the last
of the T tokens: what a runner samples from (ExecuTorch's own Llama export returns the same).
This is what ``TextLLMRunner``, ``llama_main``, Android's ``LlmModule`` and the iOS demo call.

The KV cache lives in mutable buffers ``k_cache_{i}``/``v_cache_{i}`` updated in place. Two
implementations of the cache write and the attention (``ops``):

* ``"aten"``: ``index_copy_`` into (1, Hkv, C, hd) caches and attention as explicit matmuls over
  the whole cache with an additive mask (``KVCore.finish``); portable ops and XNNPACK only.
  (Slicing the caches to the filled prefix with plain ops exports, but ExecuTorch's emitter
  then fails on the data-dependent size: "dim_order_from_stride".)
* ``"llama"``: ExecuTorch's LLM custom ops, ``llama::update_cache`` into (1, C, Hkv, hd) caches
  and ``llama::custom_sdpa``, which attends only to the filled prefix ``[0, input_pos + T)``
  and handles grouped KV heads itself. The kernels ship in the executorch wheel and in
  ExecuTorch's LLM apps; a runtime without them cannot load the program.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from edge.model import MatFormerLM
from exporters.decoding import MASK_VALUE, KVCore

OPS = ("aten", "llama")


def load_llama_ops() -> None:
    """Register ExecuTorch's LLM custom ops (``torch.ops.llama.*``) for export and for running
    a program that uses them in this process (the Python runtime and ``TextLLMRunner``)."""
    import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401  (registers on import)


class ForwardLM(nn.Module):
    """``forward(tokens, input_pos)`` over a dense model with a KV cache of ``context`` slots."""

    def __init__(self, model: MatFormerLM, context: int, ops: str = "aten"):
        super().__init__()
        if ops not in OPS:
            raise ValueError(f"unknown ops {ops!r} (allowed: {OPS})")
        self.core = KVCore(model, context, prefill_len=1)  # its prefill mask is not used here
        self.ops = ops
        c = self.core
        # aten: (1, Hkv, C, hd), heads first as the matmuls want; llama ops: (1, C, Hkv, hd)
        shape = (1, c.context, c.n_kv, c.hd) if ops == "llama" else (1, c.n_kv, c.context, c.hd)
        for i in range(c.n_layers):
            self.register_buffer(f"k_cache_{i}", torch.zeros(shape))
            self.register_buffer(f"v_cache_{i}", torch.zeros(shape))

    def caches(self, i: int):
        return getattr(self, f"k_cache_{i}"), getattr(self, f"v_cache_{i}")

    def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
        """tokens (1, T) int64, input_pos (1,) int64 -> logits (1, V) of the last token."""
        T = tokens.shape[1]
        pos = input_pos + torch.arange(T, dtype=input_pos.dtype)  # (T,) absolute positions
        cos = self.core.cos.index_select(0, pos)  # (T, hd/2)
        sin = self.core.sin.index_select(0, pos)
        x = self.core.model.tok_emb(tokens)  # (1, T, d)
        layers = self._llama if self.ops == "llama" else self._aten
        x = layers(x, pos, input_pos, cos, sin)
        return self.core.head(x[:, -1, :])  # (1, V)

    def _aten(self, x, pos, input_pos, cos, sin):
        core = self.core
        slots = torch.arange(core.context, dtype=pos.dtype)  # (C,)
        mask = torch.where(slots[None, :] <= pos[:, None], 0.0, MASK_VALUE)  # (T, C)
        mask = mask.repeat(core.rep, 1)[None]  # (1, rep*T, C): rows grouped as KVCore.qkv's q
        for i, block in enumerate(core.model.layers):
            q, k, v = core.qkv(block, x, cos, sin)  # k, v (1, Hkv, T, hd)
            kc, vc = self.caches(i)
            kc.index_copy_(2, pos, k)  # slots input_pos .. input_pos + T - 1
            vc.index_copy_(2, pos, v)
            x = self._attend(block, x, q, kc, vc, mask)
        return x

    def _attend(self, block, x, q, kc, vc, mask):
        """KVCore.finish with the head merge written for a dynamic T: attention of q
        (1, Hkv, rep*T, hd) over the caches (1, Hkv, S, hd) + mask (1, rep*T, S), the output
        projection, the residual and the FFN. (A plain reshape to (1, H, T, hd) makes export
        emit a contiguity guard on T that it then cannot prove.)"""
        core = self.core
        G, S, hd = core.n_kv, kc.shape[2], core.hd
        q3 = q.reshape(G, -1, hd)  # (Hkv, rep*T, hd)
        att = torch.softmax(torch.bmm(q3, kc.reshape(G, S, hd).transpose(1, 2)) + mask, dim=-1)
        y = torch.bmm(att, vc.reshape(G, S, hd))  # (Hkv, rep*T, hd)
        y = y.unflatten(1, (core.rep, x.shape[1])).permute(2, 0, 1, 3).flatten(1)  # (T, H*hd)
        x = x + block.attn.wo(y.unsqueeze(0))
        return x + block.ffn(core.norm(block.ffn_norm, x))

    def _llama(self, x, pos, input_pos, cos, sin):
        core = self.core
        start = llama_start(core, input_pos, x.shape[1])
        for i, block in enumerate(core.model.layers):
            x = llama_attention(core, block, x, cos, sin, *self.caches(i), start)
            x = x + block.ffn(core.norm(block.ffn_norm, x))
        return x


def llama_start(core: KVCore, input_pos: torch.Tensor, T: int):
    """The first position as the size the custom ops take, with the bounds export must know."""
    start = input_pos[0].item()
    torch._check(start >= 0)  # (torch._check_is_size is deprecated and warns on every trace)
    torch._check(start + T <= core.context)
    return start


def llama_attention(core: KVCore, block, x: torch.Tensor, cos, sin, kc, vc, start) -> torch.Tensor:
    """x (1, T, d) + the attention of one block through ExecuTorch's LLM custom ops: K/V written
    into the caches kc, vc (1, C, Hkv, hd) at ``start``, each query t attending to slots
    ``<= start + t`` (the filled prefix only). Also the elastic program's attention."""
    a = block.attn
    B, T, _ = x.shape
    h = core.norm(block.attn_norm, x)
    q = _rope_bthd(core, a.wq(h).view(B, T, core.n_heads, core.hd), cos, sin)  # (1, T, H, hd): the ops' layout
    k = _rope_bthd(core, a.wk(h).view(B, T, core.n_kv, core.hd), cos, sin)
    v = a.wv(h).view(B, T, core.n_kv, core.hd)
    torch.ops.llama.update_cache(k, kc, start)
    torch.ops.llama.update_cache(v, vc, start)
    y = torch.ops.llama.custom_sdpa(q, kc, vc, start, None, 0, True, core.scale)  # (1, T, H, hd)
    return x + a.wo(y.reshape(B, T, -1))


def _rope_bthd(core: KVCore, x, cos, sin):
    """RoPE on x (1, T, h, hd) with cos/sin (T, hd/2): broadcast over the head axis."""
    half = core.hd // 2
    cos, sin = cos[:, None, :], sin[:, None, :]  # (T, 1, hd/2)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def make_forward(model: MatFormerLM, context: int, ops: str = "aten", copy_model: bool = True) -> ForwardLM:
    """A ``ForwardLM`` over a dense model, in eval mode with frozen parameters: over a copy, or
    (``copy_model=False``, for an export that changes no weight) over ``model`` itself, which
    saves one copy of the weights at the export's peak memory (0.54 GB for a 135M model)."""
    if ops == "llama":
        load_llama_ops()
    model = (copy.deepcopy(model) if copy_model else model).eval()
    for p in model.parameters():
        p.requires_grad_(False)  # a step exported with grad-requiring params misbehaves
    return ForwardLM(model, context, ops).eval()


def max_tokens(context: int) -> int:
    """The largest T one call takes: a prompt must leave a slot for the first generated token."""
    return context - 1


def example_args(context: int) -> tuple[tuple, dict]:
    """Example (tokens, input_pos) and the dynamic shape spec for ``torch.export``."""
    T = min(2, max_tokens(context))  # not 1: export would specialise a size-1 dim
    dim = torch.export.Dim("T", min=1, max=max(2, max_tokens(context)))
    args = (torch.zeros(1, T, dtype=torch.int64), torch.tensor([0], dtype=torch.int64))
    return args, {"tokens": {1: dim}, "input_pos": None}
