"""Training-free recovery of one granularity: a least-squares refit of each layer's W_down prefix.

For granularity g (width m) and layer l, with x the FFN input of the sub-model at g (earlier
layers already refit) and h = silu(W_gate x) * (W_up x) its hidden units, find
``W = argmin ||h[:, :m] W^T - y||^2 + lam ||W||^2`` where y = W_down h is the full FFN's output at
that input: the m kept units absorb what the dropped ones contributed. Layer by layer, so later
layers see the refit earlier ones. Seconds on a 135M model.

The result is one W_down copy per granularity (d, m): the nested weights cannot hold them (one
W_down shared by all granularities, fit jointly, breaks XL), so they only fit a *dense* model
sliced at a uniform granularity (``refit_dense``). Elastic artifacts share blocks and do not use
them; the nested distillation fine-tune (edge.distill) is what ships.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edge.data import eval_batches
from edge.model import MatFormerLM
from edge.slicing import slice_model


@torch.no_grad()
def refit_w_down(model: MatFormerLM, calib: torch.Tensor, g: str, seq_len: int, max_tokens: int,
                 ridge: float = 1e-3) -> list[torch.Tensor]:
    """Per layer, a refit W_down (d, m) for granularity ``g`` of the universal ``model``."""
    m = model.config.widths[g]
    x = torch.cat([b for b, _ in eval_batches(calib, seq_len, max_tokens)])  # (N, T) calibration windows
    T = x.shape[1]
    cos, sin = model.rope_cos[:T], model.rope_sin[:T]
    h = model.tok_emb(x)  # (N, T, d): residual stream of the sub-model at g
    refits = []
    for blk in model.layers:
        h = h + blk.attn(blk.attn_norm(h), cos, sin)
        u = blk.ffn_norm(h)
        hid = F.silu(blk.ffn.w_gate(u)) * blk.ffn.w_up(u)  # (N, T, d_ff)
        y = blk.ffn.w_down(hid).reshape(-1, u.shape[-1]).double()  # (N*T, d): full FFN output
        hm = hid[..., :m].reshape(-1, m).double()  # (N*T, m)
        gram = hm.T @ hm
        lam = ridge * gram.diagonal().mean()
        w = torch.linalg.solve(gram + lam * torch.eye(m, dtype=gram.dtype), hm.T @ y).T  # (d, m)
        refits.append(w.float())
        h = h + F.linear(hid[..., :m], refits[-1])
    return refits


def refit_dense(model: MatFormerLM, g: str, refits: list[torch.Tensor]) -> MatFormerLM:
    """The dense model sliced at uniform ``g`` with its refit W_down in every layer."""
    dense = slice_model(model, (g,) * model.config.n_layers)
    with torch.no_grad():
        for blk, w in zip(dense.layers, refits):
            blk.ffn.w_down.weight.copy_(w)
    return dense
