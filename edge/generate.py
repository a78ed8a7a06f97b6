"""Eager KV-cached greedy decoding of any spec, and greedy speculative decoding.

Both run the model's own forward pass (``MatFormerLM`` from edge.model, whose attention takes an
optional ``KVCache``): a per-layer cache of keys and values is the only extra state, and the spec is an argument of every call, so
one universal model can draft at ``S`` and verify at ``XL`` without copies.

Speculative decoding (greedy): the draft proposes ``k`` tokens one at a time; the verifier runs
once over the pending token plus the ``k`` drafts, keeps the longest prefix of drafts that equals
its own greedy choice, and appends its own next token (the correction, or a bonus token when all
``k`` were accepted). The output is therefore exactly the verifier's greedy output.

Sharing the KV cache. Attention weights are shared by all granularities, but K/V at layer l are
computed from the residual stream, which depends on the FFN widths of layers < l: the draft's and
the verifier's K/V differ beyond layer 0. The sound shared scheme keeps ONE cache whose committed
prefix always holds *verifier* K/V: the draft writes its K/V after the prefix (scratch space),
reads the verifier's K/V for the prefix, and the verifier's forward over the drafted block then
overwrites those positions, so the accepted positions hold verifier K/V again. Without sharing,
draft and verifier each keep their own cache and each catches up on tokens it has not seen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from edge.model import KVCache, MatFormerLM
from edge.spec import Spec


@torch.inference_mode()
def forward_cached(model: MatFormerLM, tokens: torch.Tensor, cache: KVCache, spec: Spec | None = None) -> torch.Tensor:
    """Run ``tokens`` (1, T) at positions [cache.length, +T) under ``spec``; logits (1, T, V).

    Writes this spec's K/V for those positions into ``cache`` and advances ``cache.length``
    (the model's own attention does it: ``MatFormerLM.forward(tokens, spec, cache)``).
    """
    return model(tokens, spec, cache=cache)


@torch.inference_mode()
def greedy_generate(model: MatFormerLM, prompt: Sequence[int], n_new: int, spec: Spec | None = None) -> list[int]:
    """The ``n_new`` greedy tokens after ``prompt`` (prefill once, then one token per step)."""
    cache = KVCache(model, len(prompt) + n_new)
    logits = forward_cached(model, torch.tensor([list(prompt)]), cache, spec)
    out: list[int] = []
    while len(out) < n_new:
        out.append(int(logits[0, -1].argmax()))
        if len(out) < n_new:
            logits = forward_cached(model, torch.tensor([[out[-1]]]), cache, spec)
    return out


@dataclass
class GenerationStats:
    """What one speculative generation did; ``acceptance`` = accepted / drafted tokens."""
    drafted: int = 0
    accepted: int = 0
    rounds: int = 0
    seconds: float = 0.0
    tokens: list[int] = field(default_factory=list)

    @property
    def acceptance(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_s(self) -> float:
        return len(self.tokens) / self.seconds if self.seconds else 0.0


def _draft(model, spec, cache: KVCache, seq: list[int], k: int) -> list[int]:
    """k greedy draft tokens after ``seq``; feeds whatever of ``seq`` the cache has not seen."""
    drafts: list[int] = []
    pending = seq[cache.length:]  # >= 1 token: at least the last committed one
    for _ in range(k):
        logits = forward_cached(model, torch.tensor([pending]), cache, spec)
        drafts.append(int(logits[0, -1].argmax()))
        pending = [drafts[-1]]
    return drafts


@torch.inference_mode()
def speculative_generate(draft: MatFormerLM, draft_spec: Spec | None, verifier: MatFormerLM, verify_spec: Spec | None,
                         prompt: Sequence[int], n_new: int, k: int = 4, shared_cache: bool = False) -> GenerationStats:
    """Greedy speculative decoding; ``stats.tokens`` equals the verifier's greedy output.

    draft/verifier may be one universal model at two specs or two models. ``shared_cache=True``
    (one model only) keeps one cache whose committed prefix holds verifier K/V (module docstring).
    """
    if k < 1:
        raise ValueError(f"k={k} (allowed: a positive number of draft tokens)")
    if shared_cache and draft is not verifier:
        raise ValueError("a shared KV cache needs one model (shared attention) for draft and verifier")
    t0 = time.perf_counter()
    max_len = len(prompt) + n_new + k + 1
    v_cache = KVCache(verifier, max_len)
    d_cache = v_cache if shared_cache else KVCache(draft, max_len)
    # Prefill the verifier on all prompt tokens but the last (the "pending" token).
    seq = list(prompt)
    if len(seq) > 1:
        forward_cached(verifier, torch.tensor([seq[:-1]]), v_cache, verify_spec)
    stats, n_prompt = GenerationStats(), len(seq)
    while len(seq) - n_prompt < n_new:
        committed = len(seq) - 1  # positions whose K/V are final (the last token is pending)
        drafts = _draft(draft, draft_spec, d_cache, seq, k)
        if shared_cache:  # the draft's K/V past the prefix were scratch: drop them
            d_cache.truncate(committed)
        # One verifier pass over the unseen committed tokens + drafts overwrites their K/V.
        block = seq[v_cache.length:] + drafts
        logits = forward_cached(verifier, torch.tensor([block]), v_cache, verify_spec)
        choice = logits[0, -(k + 1):].argmax(-1).tolist()  # verifier's token after each prefix
        a = 0
        while a < k and drafts[a] == choice[a]:
            a += 1
        seq.extend(drafts[:a] + [choice[a]])
        stats.drafted, stats.accepted, stats.rounds = stats.drafted + k, stats.accepted + a, stats.rounds + 1
        for cache in {id(v_cache): v_cache, id(d_cache): d_cache}.values():
            cache.truncate(len(seq) - 1)  # keep K/V of accepted tokens only
    stats.tokens = seq[n_prompt:n_prompt + n_new]
    stats.seconds = time.perf_counter() - t0
    return stats


@torch.inference_mode()
def timed_greedy(model: MatFormerLM, prompt: Sequence[int], n_new: int, spec: Spec | None = None) -> GenerationStats:
    """Plain greedy decoding with the same stats record (no drafts) for side-by-side tables."""
    t0 = time.perf_counter()
    tokens = greedy_generate(model, prompt, n_new, spec)
    return GenerationStats(tokens=tokens, seconds=time.perf_counter() - t0)
