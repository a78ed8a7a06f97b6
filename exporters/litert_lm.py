"""Export-only graph in LiteRT-LM's signature convention (the layout Google's LLM apps run).

One module serves every signature: ``prefill_<T>`` (T tokens) and ``decode`` (T = 1) are the same
``forward`` traced at different T. Names are the ones LiteRT-LM's ``Engine`` looks up:

    inputs   tokens int32 (1, T), input_pos int32 (T,), mask float32 (1, 1, T, C),
             kv_cache_k_<i> float32 (1, Hkv, C, hd), kv_cache_v_<i> float32 (1, Hkv, hd, C)
    outputs  kv_cache_k_<i>, kv_cache_v_<i> (updated at input_pos), and ``logits`` (1, T, V)
             from decode only (prefill returns caches, as litert-torch's own LLM exports do)

``mask`` is additive (0 where a query may attend, a large negative value elsewhere); it spans the
whole cache of C slots, so chunked prompts and second turns attend to everything already written.

How it differs from the earlier ``IOCacheLM`` graph (bench/litert_decode.py times both, and
litert-torch's generative-layer graph of the same dims):

* Caches are one tensor per layer, updated with ``DYNAMIC_UPDATE_SLICE`` at ``input_pos[0]``
  (litert-torch's op), instead of blending a stacked (L, Hkv, C, hd) cache with ``where`` +
  ``cat``, which reads and writes every element of every cache twice per token. (The TFLite
  kernel still copies its input cache into its output: a perf profile of S fp32 decode puts
  that memmove at ~13%, the weight GEMMs at ~40%.)
* V is stored transposed, (1, Hkv, hd, C), so both attention products contract the last axis of
  both operands (litert-torch's ``bmm_4d``): ``BATCH_MATMUL`` with no ``TRANSPOSE`` of a cache.
* Decode needs no transposes at all: T = 1 makes (T, H, hd) -> (H, T, hd) a reshape.
* RoPE rows are looked up with ``EMBEDDING_LOOKUP`` (``index_select`` lowers to ``GATHER_ND``
  plus five bounds-check ops); no index ops on the caches.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from exporters.decoding import MASK_VALUE, KVCore


def _ops():
    """litert-torch's custom ops: (bmm_4d, dynamic_update_slice). Importing them needs no tensorflow."""
    from litert_torch.generative.custom_ops.bmm_4d import bmm_4d
    from litert_torch.generative.custom_ops.dynamic_update_slice import dynamic_update_slice

    return bmm_4d, dynamic_update_slice


def cache_names(n_layers: int) -> list[str]:
    """kv_cache_k_0, kv_cache_v_0, kv_cache_k_1, ... (the order inputs and outputs list them)."""
    return [f"kv_cache_{kv}_{i}" for i in range(n_layers) for kv in ("k", "v")]


class LiteRTLMGraph(nn.Module):
    """``forward(tokens, input_pos, mask, kv_cache)`` over a dense model; see the module docstring.

    ``kv_cache`` is a dict {"k_<i>": (1, Hkv, C, hd), "v_<i>": (1, Hkv, hd, C)} so that the
    converter names its leaves ``kv_cache_k_<i>`` / ``kv_cache_v_<i>``.
    """

    def __init__(self, model, context: int, logits: bool, n_blocks=None, core: KVCore | None = None,
                 window: int | None = None):
        super().__init__()
        # Attention reads the first `window` cache slots only (None: all C). A decode at a position
        # below the window gives the same result at a fraction of the cost: at C = 2048 reading
        # every slot is ~94 MB per token on SmolLM2, more than its fp32 S weights.
        self.window = window
        # shared norm/head/RoPE tables; an elastic artifact's members pass one core over one model
        self.core = core if core is not None else KVCore(model, context, prefill_len=1)
        self.logits = logits
        # Blocked FFNs (exporters/blocked.py): layer i sums its first n_blocks[i] blocks; None: dense
        self.n_blocks = list(n_blocks) if n_blocks is not None else None
        self.bmm_4d, self.dus = _ops()

    def cache_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of every cache input, keyed by its dict key (k_<i>, v_<i>)."""
        c = self.core
        out = {}
        for i in range(c.n_layers):
            out[f"k_{i}"] = (1, c.n_kv, c.context, c.hd)  # (B, Hkv, C, hd)
            out[f"v_{i}"] = (1, c.n_kv, c.hd, c.context)  # (B, Hkv, hd, C): transposed
        return out

    def attend(self, i, block, x, cos, sin, mask, kc, vc, start):
        """Layer i: x (1, T, d) -> (1, T, d); caches written at slots [start, start + T)."""
        c, T = self.core, x.shape[1]
        a = block.attn
        h = c.norm(block.attn_norm, x)
        q = c.rope(a.wq(h).view(T, c.n_heads, c.hd), cos, sin) * c.scale  # (T, H, hd)
        k = c.rope(a.wk(h).view(T, c.n_kv, c.hd), cos, sin)  # (T, Hkv, hd)
        v = a.wv(h).view(T, c.n_kv, c.hd)
        zero = torch.zeros((), dtype=start.dtype)
        # (T, Hkv, hd) -> (1, Hkv, T, hd) and (1, Hkv, hd, T); plain reshapes when T = 1
        k_new = k.permute(1, 0, 2).unsqueeze(0) if T > 1 else k.view(1, c.n_kv, 1, c.hd)
        v_new = v.permute(1, 2, 0).unsqueeze(0) if T > 1 else v.view(1, c.n_kv, c.hd, 1)
        kc = self.dus(kc, k_new, [zero, zero, start, zero])
        vc = self.dus(vc, v_new, [zero, zero, zero, start])
        # Query heads grouped by the KV head they share (head j*rep + r uses KV head j):
        # (T, H, hd) -> (1, Hkv, rep*T, hd), row r*T + t.
        qg = (q.permute(1, 0, 2) if T > 1 else q).reshape(1, c.n_kv, c.rep * T, c.hd)
        W = self.window or c.context  # slots attended; the caches returned keep all C
        ka, va = (kc, vc) if W == c.context else (kc[:, :, :W], vc[:, :, :, :W])  # SLICE: W slots
        s = self.bmm_4d(qg, ka)  # (1, Hkv, rep*T, W): contracts hd, no transpose of K
        s = (s.view(c.n_kv * c.rep, T, W) + mask.view(1, T, W)).view(1, c.n_kv, c.rep * T, W)
        y = self.bmm_4d(torch.softmax(s, dim=-1), va)  # (1, Hkv, rep*T, hd): contracts W of V^T
        y = y.view(c.n_heads, T, c.hd)
        y = (y.permute(1, 0, 2) if T > 1 else y).reshape(1, T, c.n_heads * c.hd)  # (1, T, H*hd)
        x = x + a.wo(y)
        h = c.norm(block.ffn_norm, x)
        return x + (block.ffn(h) if self.n_blocks is None else block.ffn(h, self.n_blocks[i])), kc, vc

    def forward(self, tokens, input_pos, mask, kv_cache: dict):
        """tokens (1, T) int32, input_pos (T,) int32, mask (1, 1, T, C) -> {logits?, kv_cache_*}."""
        c = self.core
        pos = input_pos.to(torch.int32)
        # (T, 1, hd/2): a row lookup per position (index_select lowers to GATHER_ND + bounds checks)
        cos = F.embedding(pos, c.cos).unsqueeze(1)
        sin = F.embedding(pos, c.sin).unsqueeze(1)
        start = pos[0]  # caches are written at input_pos[0] .. input_pos[0] + T - 1
        x = c.model.tok_emb(tokens)  # (1, T, d)
        out = {}
        for i, block in enumerate(c.model.layers):
            x, kc, vc = self.attend(i, block, x, cos, sin, mask, kv_cache[f"k_{i}"], kv_cache[f"v_{i}"], start)
            out[f"kv_cache_k_{i}"], out[f"kv_cache_v_{i}"] = kc, vc
        if self.logits:
            return {"logits": c.head(x), **out}  # (1, T, V)
        return out


def make_graph(model, context: int, logits: bool, window: int | None = None) -> LiteRTLMGraph:
    """The graph over a frozen copy of a dense model (eval mode, no grad-requiring parameters)."""
    return LiteRTLMGraph(copy.deepcopy(model).eval().requires_grad_(False), context, logits, window=window).eval()


@contextmanager
def frozen(model):
    """``model`` itself in eval mode without grad-requiring parameters, as it was again on exit.
    Converting a copy instead would hold the weights twice (540 MB more for SmolLM2 XL fp32)."""
    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    model.eval().requires_grad_(False)
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training
        for p, g in grads:
            p.requires_grad_(g)


def signature_graphs(model, context: int, prefill_lens, windows) -> list[tuple[str, LiteRTLMGraph, int]]:
    """(name, graph, T) of every signature: ``prefill_<T>``, ``decode`` and ``decode_w<N>``, all
    over the one model (enter ``frozen(model)`` first) and one core: a copy per signature would
    hold the weights that many times while converting (4.3 GB for SmolLM2 S fp32 with five)."""
    core = KVCore(model, context, prefill_len=1)
    out = [(f"prefill_{T}", LiteRTLMGraph(model, context, False, core=core).eval(), T) for T in prefill_lens]
    out.append(("decode", LiteRTLMGraph(model, context, True, core=core).eval(), 1))
    out += [(f"decode_w{W}", LiteRTLMGraph(model, context, True, core=core, window=W).eval(), 1) for W in windows]
    return out


def sample_kwargs(graph: LiteRTLMGraph, T: int) -> dict:
    """Example inputs of one signature with T tokens (zeros; input_pos 0..T-1; a causal mask)."""
    C = graph.window or graph.core.context
    mask = torch.full((1, 1, T, C), MASK_VALUE).triu(1)  # row t sees slots <= t
    return {"tokens": torch.zeros(1, T, dtype=torch.int32),
            "input_pos": torch.arange(T, dtype=torch.int32), "mask": mask,
            "kv_cache": {k: torch.zeros(s) for k, s in graph.cache_shapes().items()}}
