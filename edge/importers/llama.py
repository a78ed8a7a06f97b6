"""What every Llama-family importer shares: the config it builds and the weights it checks.

A dense imported model is a ``MatFormerLM`` with a single granularity (``XL`` = the whole FFN):
nothing is nested until ``matedge convert`` orders the FFN units. Weight names are the project's
(``layers.{i}.ffn.w_gate.weight`` ...), shapes ``(out, in)`` as in ``nn.Linear``.
"""

from __future__ import annotations

import torch

from edge.config import ConfigError, MatFormerConfig
from edge.errors import MatEdgeError
from edge.model import MatFormerLM

# Positions the RoPE tables and exported caches are sized for, unless asked otherwise: the
# source's 8k+ contexts would only make every exported KV cache larger.
DEFAULT_MAX_CONTEXT = 2048


class ImportFailed(MatEdgeError):
    """A source cannot be imported; the message names the source and what is supported."""


def dense_config(*, vocab_size: int, d_model: int, n_layers: int, n_heads: int, n_kv_heads: int,
                 ffn_sizes: list[int], rope_base: float, norm_eps: float, tie_embeddings: bool,
                 context: int | None, max_context: int | None, source: str) -> MatFormerConfig:
    """The project's config for a dense Llama: one granularity, per-layer sizes only if they differ."""
    uniform = len(set(ffn_sizes)) == 1
    ctx = max_context or min(context or DEFAULT_MAX_CONTEXT, DEFAULT_MAX_CONTEXT)
    try:
        return MatFormerConfig(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                               n_kv_heads=n_kv_heads, d_ff=max(ffn_sizes), granularity_fractions=(1.0,),
                               granularity_names=("XL",), max_context=ctx, rope_base=float(rope_base),
                               norm_eps=float(norm_eps), tie_embeddings=bool(tie_embeddings),
                               ffn_sizes=None if uniform else tuple(ffn_sizes))
    except (ConfigError, TypeError) as e:
        raise ImportFailed(f"{source}: the model's sizes do not fit a Llama decoder ({e})") from None


def build_model(config: MatFormerConfig, state: dict[str, torch.Tensor], source: str) -> MatFormerLM:
    """A ``MatFormerLM`` holding ``state`` exactly (every weight present, every shape right)."""
    model = MatFormerLM(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    bad = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
           for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or extra or bad:
        raise ImportFailed(f"{source}: weights do not match its config (missing {missing[:3]}, "
                           f"unexpected {extra[:3]}, wrong shape {bad[:3]})")
    model.load_state_dict({k: v.float().contiguous() for k, v in state.items()}, strict=True)
    return model.eval()
