"""Dense -> MatFormer: order each layer's FFN hidden units by importance, so that every prefix
is the best sub-FFN that ordering can give, and declare the nested granularities.

A SwiGLU FFN is a sum over hidden units j: ``y = sum_j silu(g_j . x) (u_j . x) W_down[:, j]``, so
permuting units (rows of W_gate and W_up, columns of W_down alike) leaves XL unchanged up to
float summation order. Importance is measured on calibration text (training documents only,
never the held-out ones): ``energy`` = sqrt(E[h_j^2]) * ||W_down[:, j]|| (the RMS size of unit
j's contribution to the output), ``activation`` = E|h_j|. Weight magnitude is not offered: a few
units of real models carry huge activations through small weights and would rank last.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
import torch.nn.functional as F

from edge.data import eval_batches
from edge.errors import MatEdgeError
from edge.model import MatFormerLM

ORDERINGS = ("energy", "activation")
DEFAULT_FRACTIONS = (1 / 8, 1 / 4, 1 / 2, 1.0)


@torch.no_grad()
def ffn_statistics(model: MatFormerLM, stream: torch.Tensor, seq_len: int, max_tokens: int) -> list[dict]:
    """Per layer: E[h^2] and E|h| of the FFN hidden units h = silu(W_gate x) * (W_up x), each (d_ff,)."""
    stats = [{"sq": 0.0, "abs": 0.0, "n": 0} for _ in model.layers]

    def hook(i):
        def fn(module, args):
            x = args[0]  # (B, T, d): the FFN's input (after ffn_norm)
            h = F.silu(module.w_gate(x)) * module.w_up(x)  # (B, T, d_ff)
            h = h.reshape(-1, h.shape[-1]).double()
            stats[i]["sq"] = stats[i]["sq"] + h.pow(2).sum(0)
            stats[i]["abs"] = stats[i]["abs"] + h.abs().sum(0)
            stats[i]["n"] += h.shape[0]
        return fn

    handles = [blk.ffn.register_forward_pre_hook(hook(i)) for i, blk in enumerate(model.layers)]
    try:
        model.eval()
        for x, _ in eval_batches(stream, seq_len, max_tokens, batch=4):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return [{"mean_sq": s["sq"] / s["n"], "mean_abs": s["abs"] / s["n"]} for s in stats]


def importance(model: MatFormerLM, stats: list[dict], ordering: str) -> list[torch.Tensor]:
    """Per layer, a score per hidden unit (d_ff,): higher = kept in smaller granularities."""
    if ordering not in ORDERINGS:
        raise MatEdgeError(f"ordering {ordering!r} (allowed: {', '.join(ORDERINGS)})")
    scores = []
    for blk, s in zip(model.layers, stats):
        if ordering == "energy":
            col_norm = blk.ffn.w_down.weight.double().norm(dim=0)  # (d_ff,): ||W_down[:, j]||
            scores.append(s["mean_sq"].sqrt() * col_norm)
        else:
            scores.append(s["mean_abs"].clone())
    return scores


@torch.no_grad()
def permute_ffn(model: MatFormerLM, orders: Sequence[torch.Tensor]) -> None:
    """Reorder each layer's hidden units in place: unit orders[l][k] becomes unit k."""
    for blk, order in zip(model.layers, orders):
        ffn = blk.ffn
        ffn.w_gate.weight.copy_(ffn.w_gate.weight[order])  # (d_ff, d)
        ffn.w_up.weight.copy_(ffn.w_up.weight[order])  # (d_ff, d)
        ffn.w_down.weight.copy_(ffn.w_down.weight[:, order])  # (d, d_ff)


def parse_fractions(text: str, names: str | None) -> tuple[tuple[float, ...], tuple[str, ...]]:
    """``"1/8,1/4,1/2,1"`` or ``"0.125,0.25,0.5,1"`` (+ names, default S,M,L,XL for four)."""
    try:
        fr = tuple(float(a) / float(b) if "/" in p else float(p)
                   for p in text.split(",") for a, _, b in [p.strip().partition("/")])
    except (ValueError, ZeroDivisionError):
        fr = ()
    if not fr or fr[-1] != 1.0 or any(not 0 < a < b for a, b in zip(fr, fr[1:])) or fr[0] <= 0:
        raise MatEdgeError(f"--fractions {text!r} (allowed: increasing fractions of d_ff ending in 1, e.g. 1/8,1/4,1/2,1)")
    if names is None:
        if len(fr) != 4:
            raise MatEdgeError(f"--fractions {text!r} has {len(fr)} granularities: name them with --names, e.g. "
                               + ",".join(f"G{i}" for i in range(len(fr) - 1)) + ",XL")
        return fr, ("S", "M", "L", "XL")
    nm = tuple(n.strip() for n in names.split(","))
    if len(nm) != len(fr) or len(set(nm)) != len(nm) or not all(n.isalnum() for n in nm):
        raise MatEdgeError(f"--names {names!r} (allowed: {len(fr)} distinct alphanumeric names, one per fraction)")
    return fr, nm


def make_elastic(model: MatFormerLM, orders: Sequence[torch.Tensor], fractions: Sequence[float],
                 names: Sequence[str]) -> MatFormerLM:
    """A universal MatFormer copy of the dense ``model`` with units in ``orders`` and the given granularities."""
    if not model.config.is_universal:
        raise MatEdgeError("per-layer FFN sizes differ: convert needs one d_ff in every layer")
    try:
        config = dataclasses.replace(model.config, granularity_fractions=tuple(fractions),
                                     granularity_names=tuple(names))
    except MatEdgeError as e:
        raise MatEdgeError(f"granularities do not fit d_ff={model.config.d_ff}: {e}") from None
    elastic = MatFormerLM(config)
    elastic.load_state_dict(model.state_dict())
    permute_ffn(elastic, orders)
    return elastic.eval()


def convert(model: MatFormerLM, calib: torch.Tensor, fractions=DEFAULT_FRACTIONS, names=("S", "M", "L", "XL"),
            ordering: str = "energy", seq_len: int = 256, calib_tokens: int = 8192) -> tuple[MatFormerLM, dict]:
    """(elastic model, provenance): importance-ordered units on ``calib`` (calibration token ids)."""
    seq = min(seq_len, model.config.max_context)
    stats = ffn_statistics(model, calib, seq, calib_tokens)
    orders = [s.argsort(descending=True) for s in importance(model, stats, ordering)]
    elastic = make_elastic(model, orders, fractions, names)
    info = {"ordering": ordering, "calibration_tokens": min(calib_tokens, (len(calib) - 1) // seq * seq),
            "seq_len": seq, "fractions": list(fractions), "names": list(names)}
    return elastic, info

