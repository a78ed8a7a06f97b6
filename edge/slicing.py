"""Slicing: turn a Mix'n'Match spec of the universal model into a standalone dense model.

The dense model is a plain ``MatFormerLM`` whose config lists each layer's intermediate size
(``ffn_sizes``): it holds copies of the weight prefixes, runs without a spec, and exports,
profiles and saves like any other model. Its logits equal the universal model run at ``spec``.
"""

from __future__ import annotations

import dataclasses

import torch

from edge.model import MatFormerLM
from edge.spec import Spec, spec_widths


@torch.no_grad()
def slice_model(model: MatFormerLM, spec: Spec, share: bool = False) -> MatFormerLM:
    """A dense copy of ``model`` at ``spec`` (per-layer FFN prefix widths).

    ``share``: tensors the slice keeps whole (embeddings, attention, norms and the FFNs of layers
    at full width: all of them at XL) are the universal model's own storage rather than copies.
    For callers that never write into the weights (the exporters): at XL it saves a copy of the
    whole model while converting (540 MB for SmolLM2 fp32). Cut FFN prefixes are always copies,
    so that a deepcopy of the slice never copies the universal tensor behind a view.
    """
    config = model.config
    if not config.is_universal:
        raise ValueError("only the universal model can be sliced")
    widths = spec_widths(spec, config)
    dense_config = dataclasses.replace(config, ffn_sizes=tuple(widths), spec=tuple(spec))
    dense = MatFormerLM(dense_config)
    src = model.state_dict()
    state = {}
    for name, target in dense.state_dict().items():
        w = src[name]
        if w.shape != target.shape:  # an FFN weight: keep the first m hidden units
            if name.endswith("w_down.weight"):
                w = w[:, : target.shape[1]]  # (d, d_ff) -> (d, m)
            else:
                w = w[: target.shape[0]]  # w_gate / w_up: (d_ff, d) -> (m, d)
            w = w.clone() if share else w  # assign=True below must not keep a view
        state[name] = w  # unshared: a view that load_state_dict copies into dense (no third copy)
    dense.load_state_dict(state, assign=share)
    return dense.eval()
