"""Mix'n'Match specs: one FFN granularity per layer.

A spec is a tuple of granularity names, one per layer, e.g. ``("S", "S", "M", "M", "L", "XL")``.
Compact strings: ``"XL"`` (uniform), ``"S,S,M,M,L,XL"`` (per layer); ``"S*2,M*2,L,XL"`` repeats.
"""

from __future__ import annotations

from edge.errors import MatEdgeError

import itertools
import random
from typing import Iterable, Sequence

from edge.config import MatFormerConfig

Spec = tuple[str, ...]


class SpecError(MatEdgeError):
    """A spec string or tuple does not fit the model; the message says what would be accepted."""


def parse_spec(text: str | Sequence[str], config: MatFormerConfig) -> Spec:
    """Parse ``"XL"``, ``"S,M,L,XL"`` or ``"S*2,M*2"`` into one granularity name per layer."""
    names = config.granularity_names
    allowed = (f"one of {'/'.join(names)} for all layers, or {config.n_layers} comma-separated "
               f"names such as {','.join(_example(names, config.n_layers))}")
    if isinstance(text, str) and len(text) > 16 * config.n_layers + 64:
        raise SpecError(f"spec {_short(text)} is {len(text):,} characters long (allowed: one name per layer, "
                        f"{config.n_layers} layers)")
    if isinstance(text, str):
        parts = [p.strip() for p in text.strip().split(",")]
    else:
        parts = [str(p).strip() for p in text]
    by_upper = {n.upper(): n for n in names}  # names are case-insensitive
    layers: list[str] = []
    for part in parts:
        name, _, count = part.partition("*")
        name = by_upper.get(name.strip().upper(), "")
        if not name:
            raise SpecError(f"spec {_short(text)}: unknown granularity {part[:40]!r} (allowed: {allowed})")
        try:
            n = int(count) if count else 1
        except ValueError:
            n = 0
        if not 1 <= n <= config.n_layers - len(layers):  # checked before the list grows
            raise SpecError(f"spec {_short(text)}: repeat count in {part[:40]!r} (allowed: NAME*N with "
                            f"1 <= N and {config.n_layers} layers in all)")
        layers.extend([name] * n)
    if len(layers) == 1:
        layers = layers * config.n_layers
    if len(layers) != config.n_layers:
        raise SpecError(f"spec {text!r} has {len(layers)} layers but the model has "
                        f"{config.n_layers} (allowed: {allowed})")
    return tuple(layers)


def _short(text) -> str:
    r = repr(text)
    return r if len(r) <= 60 else r[:57] + "..."


def _example(names: Sequence[str], n_layers: int) -> list[str]:
    return [names[min(len(names) - 1, i * len(names) // n_layers)] for i in range(n_layers)]


def format_spec(spec: Spec) -> str:
    """The shortest string `parse_spec` reads back: ``"XL"`` for uniform specs, else comma list."""
    return spec[0] if len(set(spec)) == 1 else ",".join(spec)


def compact_spec(spec: Spec | str, min_run: int = 3) -> str:
    """``format_spec`` with runs of ``min_run`` or more written ``G*n`` (parse_spec reads it back):
    a 30-layer spec fits a table column. "XL,M,M,M,M,L" -> "XL,M*4,L". A formatted spec (as
    manifests store it) is accepted as it is."""
    if isinstance(spec, str):
        spec = tuple(spec.split(","))
    if len(set(spec)) == 1:
        return spec[0]
    parts = []
    for name, run in itertools.groupby(spec):
        n = len(list(run))
        parts.extend([f"{name}*{n}"] if n >= min_run else [name] * n)
    return ",".join(parts)


def uniform(name: str, config: MatFormerConfig) -> Spec:
    return parse_spec(name, config)


def spec_widths(spec: Spec, config: MatFormerConfig) -> list[int]:
    """FFN hidden units of each layer under ``spec``."""
    w = config.widths
    return [w[g] for g in spec]


def param_count(spec: Spec | None, config: MatFormerConfig) -> int:
    """Parameters of the dense model sliced at ``spec`` (None: the model as stored)."""
    widths = config.layer_ffn_sizes() if spec is None else spec_widths(spec, config)
    d, kv = config.d_model, config.n_kv_heads * config.head_dim
    attn = d * d * 2 + d * kv * 2  # q, o: d x d; k, v: d x kv
    norms = 2 * d
    per_layer = sum(attn + norms + 3 * d * m for m in widths)
    embed = config.vocab_size * d * (1 if config.tie_embeddings else 2)
    return embed + per_layer + d  # + final norm


def flops_per_token(spec: Spec | None, config: MatFormerConfig, context: int = 0) -> int:
    """Forward FLOPs for one token: 2 per matmul weight (incl. the LM head, excl. the embedding
    lookup) plus attention scores and mixing against ``context`` cached positions."""
    widths = config.layer_ffn_sizes() if spec is None else spec_widths(spec, config)
    d, kv = config.d_model, config.n_kv_heads * config.head_dim
    matmul = sum(d * d * 2 + d * kv * 2 + 3 * d * m for m in widths) + config.vocab_size * d
    attention = 4 * config.n_layers * d * context  # QK^T and AV, n_heads * head_dim = d
    return 2 * matmul + attention


def monotone_family(config: MatFormerConfig) -> list[Spec]:
    """The paper's Mix'n'Match family: granularity non-decreasing with depth (all of them)."""
    names = config.granularity_names
    return [tuple(names[i] for i in combo)
            for combo in itertools.combinations_with_replacement(range(len(names)), config.n_layers)]


def random_spec(config: MatFormerConfig, rng: random.Random) -> Spec:
    """A uniformly random per-layer spec (not necessarily monotone)."""
    return tuple(rng.choice(config.granularity_names) for _ in range(config.n_layers))


def is_monotone(spec: Spec, config: MatFormerConfig) -> bool:
    rank = {n: i for i, n in enumerate(config.granularity_names)}
    return all(rank[a] <= rank[b] for a, b in zip(spec, spec[1:]))


def uniform_specs(config: MatFormerConfig) -> dict[str, Spec]:
    """{"S": ("S",)*n_layers, ...} for every granularity."""
    return {g: (g,) * config.n_layers for g in config.granularity_names}


def all_specs(config: MatFormerConfig) -> Iterable[Spec]:
    """Every per-layer spec (len(names) ** n_layers of them; use with care)."""
    return itertools.product(config.granularity_names, repeat=config.n_layers)
