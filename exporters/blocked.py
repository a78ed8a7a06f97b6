"""Blocked FFN: a ``module -> module`` transform that stores each nested FFN as disjoint blocks.

MatFormer's granularity i of a layer uses the first m_i hidden units of its SwiGLU FFN. Slicing
``W[:m]`` inside an exported graph is the wrong way to ship several granularities: converters
fold each slice into a copy, or XNNPACK leaves the matmul undelegated. Instead every layer's FFN
is split into blocks of hidden units ``[0:m_S], [m_S:m_M], [m_M:m_L], [m_L:m_XL]``, each its own
gate/up/down ``nn.Linear``. Because SwiGLU is elementwise in the hidden dimension, granularity i
is *exactly* the sum of the first i+1 blocks' partial down-projections:

    ffn_i(x) = sum_{j <= i} W_down[:, B_j] (silu(W_gate[B_j] x) * W_up[B_j] x)

Every granularity then reads the same stored tensors (one copy of the weights in a
multi-method artifact), and every matmul has a static weight (fully delegated).

The model file stays untouched: ``blocked_model`` returns a deep copy whose FFNs are
``BlockedFFN`` modules; export wrappers (exporters/elastic.py) call ``ffn(x, n_blocks)``.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edge.model import MatFormerLM


class BlockedFFN(nn.Module):
    """A SwiGLU FFN stored as ``len(bounds) - 1`` disjoint blocks of hidden units.

    ``bounds`` are the cumulative widths with a leading 0, e.g. (0, 128, 256, 512, 1024): block j
    holds hidden units [bounds[j], bounds[j+1]).
    """

    def __init__(self, d_model: int, bounds: Sequence[int]):
        super().__init__()
        self.bounds = tuple(int(b) for b in bounds)
        sizes = [b - a for a, b in zip(self.bounds, self.bounds[1:])]
        self.gate = nn.ModuleList(nn.Linear(d_model, m, bias=False) for m in sizes)  # weight (m_j, d)
        self.up = nn.ModuleList(nn.Linear(d_model, m, bias=False) for m in sizes)  # weight (m_j, d)
        self.down = nn.ModuleList(nn.Linear(m, d_model, bias=False) for m in sizes)  # weight (d, m_j)

    @property
    def n_blocks(self) -> int:
        return len(self.gate)

    def forward(self, x: torch.Tensor, n_blocks: int | None = None) -> torch.Tensor:
        """x (B, T, d) -> (B, T, d): the FFN of the first ``n_blocks`` blocks (all by default)."""
        n = self.n_blocks if n_blocks is None else n_blocks
        if not 1 <= n <= self.n_blocks:
            raise ValueError(f"n_blocks={n} outside [1, {self.n_blocks}]")
        out = None
        for j in range(n):  # unrolled at export: one static-weight matmul triple per block
            part = self.down[j](F.silu(self.gate[j](x)) * self.up[j](x))
            out = part if out is None else out + part
        return out

    @classmethod
    def from_nested(cls, ffn: nn.Module, bounds: Sequence[int]) -> "BlockedFFN":
        """Copy a NestedFFN's weights into blocks (exact: the same numbers, split by rows/columns)."""
        d_model = ffn.w_gate.weight.shape[1]
        if bounds[-1] > ffn.w_gate.weight.shape[0]:
            raise ValueError(f"blocks up to {bounds[-1]} hidden units, the FFN stores {ffn.w_gate.weight.shape[0]}")
        out = cls(d_model, bounds)
        with torch.no_grad():
            for j, (a, b) in enumerate(zip(out.bounds, out.bounds[1:])):
                out.gate[j].weight.copy_(ffn.w_gate.weight[a:b])
                out.up[j].weight.copy_(ffn.w_up.weight[a:b])
                out.down[j].weight.copy_(ffn.w_down.weight[:, a:b])
        return out


def granularity_bounds(config, top: str | None = None) -> tuple[int, ...]:
    """(0, m_S, m_M, ..., m_top): cumulative widths of the granularities up to ``top`` (default: the largest)."""
    names = config.granularity_names
    last = names.index(top) if top is not None else len(names) - 1
    return (0, *(config.widths[g] for g in names[: last + 1]))


def blocked_model(model: MatFormerLM, tops: Sequence[str] | None = None) -> MatFormerLM:
    """A copy of a universal model whose layer l FFN is blocked up to granularity ``tops[l]``.

    ``tops`` (one granularity name per layer, default the largest everywhere) lets an artifact
    leave out blocks no member uses: its weights are then those of the per-layer maximum spec.
    Parameters of the copy do not require grad (export wants frozen weights).
    """
    cfg = model.config
    if not cfg.is_universal:
        raise ValueError("blocked_model needs the universal model (a sliced model has one width per layer)")
    tops = list(tops) if tops is not None else [cfg.granularity_names[-1]] * cfg.n_layers
    if len(tops) != cfg.n_layers:
        raise ValueError(f"tops has {len(tops)} layers, the model has {cfg.n_layers}")
    out = copy.deepcopy(model).eval()
    for block, top in zip(out.layers, tops):
        block.ffn = BlockedFFN.from_nested(block.ffn, granularity_bounds(cfg, top))
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def blocks_for(spec: Sequence[str], config) -> list[int]:
    """Blocks each layer uses under ``spec``: granularity index + 1 (S -> 1, ..., XL -> 4)."""
    names = config.granularity_names
    return [names.index(g) + 1 for g in spec]


def envelope(specs: Sequence[Sequence[str]], config) -> tuple[str, ...]:
    """The per-layer largest granularity over ``specs``: the weights an artifact holding them all stores."""
    names = config.granularity_names
    return tuple(names[max(names.index(s[l]) for s in specs)] for l in range(config.n_layers))


class BlockPrefix(nn.Module):
    """The first ``n`` blocks of a BlockedFFN as a plain ``ffn(x)`` module (the weights are shared)."""

    def __init__(self, ffn: BlockedFFN, n: int):
        super().__init__()
        self.ffn, self.n = ffn, int(n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn(x, self.n)


def member_view(base: MatFormerLM, n_blocks: Sequence[int]) -> MatFormerLM:
    """A view of a blocked model whose layer l FFN runs its first ``n_blocks[l]`` blocks.

    Module containers are new, every parameter and buffer is the base's own tensor: wrappers
    written for a dense model (exporters/decoding.py) export one member each, and a converter that
    stores identical tensors once (Core ML's ``save_multifunction``) keeps one copy of the weights.
    """
    if len(n_blocks) != len(base.layers):
        raise ValueError(f"n_blocks has {len(n_blocks)} layers, the model has {len(base.layers)}")
    view = copy.copy(base)
    view._modules = dict(base._modules)  # copy.copy shares the child dict: give the view its own
    layers = nn.ModuleList()
    for block, n in zip(base.layers, n_blocks):
        b = copy.copy(block)
        b._modules = dict(block._modules)
        b.ffn = BlockPrefix(block.ffn, n)
        layers.append(b)
    view.layers = layers
    return view
