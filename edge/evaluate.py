"""Evaluation: validation loss of any spec, and consistency of a submodel with a reference.

Consistency (paper section 4.1.1): on the same validation text, how often the submodel's greedy
next token equals the reference's (XL by default), and the mean KL(reference || submodel).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from edge.data import eval_batches
from edge.model import MatFormerLM
from edge.spec import Spec



@torch.no_grad()
def eval_loss(model: MatFormerLM, stream: torch.Tensor, spec: Spec | None, seq_len: int, max_tokens: int) -> float:
    """Mean next-token cross-entropy (nats/token) over deterministic windows of ``stream``."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for x, y in eval_batches(stream, seq_len, max_tokens):
        logits = model(x, spec)  # (B, T, V)
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    model.train(was_training)
    return total / count


@torch.no_grad()
def consistency(ref: MatFormerLM, ref_spec: Spec | None, model: MatFormerLM, spec: Spec | None,
                stream: torch.Tensor, seq_len: int, max_tokens: int) -> dict[str, float]:
    """Greedy next-token agreement (%) and mean KL(ref || model) in nats per token."""
    ref.eval()
    model.eval()
    agree, kl, count = 0, 0.0, 0
    for x, _ in eval_batches(stream, seq_len, max_tokens):
        lp_ref = F.log_softmax(ref(x, ref_spec).float(), dim=-1)  # (B, T, V)
        lp = F.log_softmax(model(x, spec).float(), dim=-1)
        agree += (lp_ref.argmax(-1) == lp.argmax(-1)).sum().item()
        kl += (lp_ref.exp() * (lp_ref - lp)).sum().item()
        count += x.numel()
    return {"agreement_pct": 100.0 * agree / count, "kl": kl / count}


def perplexity(loss: float) -> float:
    return math.exp(loss)


def bits_per_byte(loss: float) -> float:
    """Byte-level tokens: nats/token -> bits per byte."""
    return loss / math.log(2)


class SpecScorer:
    """Validation loss of many specs of one universal model, fast and cached.

    Specs that share their first layers share the hidden states after those layers, so the
    monotone family (enumerated in order) and evolutionary mutations re-run only the layers that
    differ. Losses are memoised by spec (and optionally persisted as JSON by the caller).
    """

    def __init__(self, model: MatFormerLM, stream: torch.Tensor, seq_len: int, max_tokens: int,
                 max_cached_prefixes: int = 48):
        self.model = model.eval()
        # One batch holding every window: (n, T) inputs and targets.
        self.x, self.y = next(eval_batches(stream, seq_len, max_tokens, batch=10**9))
        self.losses: dict[tuple[str, ...], float] = {}
        self._prefix: dict[tuple[str, ...], torch.Tensor] = {}  # insertion order = LRU order
        self._max = max_cached_prefixes

    @torch.no_grad()
    def _hidden(self, spec: tuple[str, ...]) -> torch.Tensor:
        """Residual stream after the layers of ``spec`` (n, T, d), reusing the longest cached prefix."""
        k = len(spec)
        while k > 0 and spec[:k] not in self._prefix:
            k -= 1
        h = self._prefix[spec[:k]] if k else self.model.tok_emb(self.x)
        pad = (self.model.config.granularity_names[-1],) * (self.model.config.n_layers - len(spec))
        for i in range(k, len(spec)):
            h = self.model.hidden(h, spec + pad, first=i, last=i + 1)
            self._remember(spec[: i + 1], h)
        return h

    def _remember(self, key, h) -> None:
        self._prefix.pop(key, None)
        self._prefix[key] = h
        while len(self._prefix) > self._max:
            self._prefix.pop(next(iter(self._prefix)))

    @torch.no_grad()
    def loss(self, spec) -> float:
        spec = tuple(spec)
        if spec not in self.losses:
            h = self._hidden(spec)
            logits = self.model.logits(h)
            self.losses[spec] = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), self.y.reshape(-1)).item()
        return self.losses[spec]

    __call__ = loss
