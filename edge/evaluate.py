"""Evaluation: validation loss of any spec, and consistency of a submodel with a reference.

Consistency (paper section 4.1.1): on the same validation text, how often the submodel's greedy
next token equals the reference's (XL by default), and the mean KL(reference || submodel).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from edge.data import eval_batches
from edge.model import MatFormerLM

Spec = Sequence[str] | None


@torch.no_grad()
def eval_loss(model: MatFormerLM, stream: torch.Tensor, spec: Spec, seq_len: int, max_tokens: int) -> float:
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
def consistency(ref: MatFormerLM, ref_spec: Spec, model: MatFormerLM, spec: Spec,
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
