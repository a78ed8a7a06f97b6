"""Micro-model design: the small dense models whose measured costs the cost table is fitted from.

One layer at each FFN width, the full-depth model at its widest width, and ``CALIBRATION_MODELS``
mixed full-depth models (random per-layer widths from a fixed seed). See ``micro_layouts`` for
why mostly mixed models.
"""

from __future__ import annotations

import dataclasses

CALIBRATION_SEED = 1234  # not the seed validate_predictor draws its specs from
# Mixed full-depth micro-models. Cross-validated on the host (fp32, the fit as shipped): 6 gave
# 2.9% mean decode error, 12 gave 2.0%.
CALIBRATION_MODELS = 12


def micro_layouts(config, calibration: int = CALIBRATION_MODELS) -> list[tuple[str, tuple[str, ...]]]:
    """(name, per-layer granularities) of the micro-models.

    One layer of every granularity; the full model at its widest granularity; and
    ``calibration`` mixed models of the target depth (random per-layer granularities from a
    fixed seed). Why mostly mixed models: a layer's cost depends on the working set of the whole
    model (measured here: all-XL at 23 MiB falls off a cache cliff, and an additive fit to
    uniform deep models over-predicted every mixed spec by ~9%); mixed models put each width in
    the cache regime real specs see. The widest model is there so that the cache-spill term is
    measured up to the largest spec, never extrapolated past it.
    """
    import random

    names = config.granularity_names
    layouts = [(f"{g}x1", (g,)) for g in names]
    top = (names[-1],) * config.n_layers
    if config.n_layers > 1:
        layouts.append((f"{names[-1]}x{config.n_layers}", top))
    rng, seen = random.Random(CALIBRATION_SEED), set()
    possible = len(names) ** config.n_layers - 1  # every layout but the widest
    while len(seen) < min(calibration, possible) and config.n_layers > 1:
        layers = tuple(rng.choice(names) for _ in range(config.n_layers))
        if layers not in seen and layers != top:
            seen.add(layers)
            layouts.append((f"mix{len(seen)}-{''.join(layers)}", layers))
    return layouts


def micro_model(config, layers: tuple[str, ...], seed: int = 0):
    """A dense MatFormerLM with the given per-layer granularities (random weights: timing and
    memory do not depend on the values)."""
    import torch

    from edge.model import MatFormerLM

    widths = config.widths
    dense = dataclasses.replace(config, n_layers=len(layers), ffn_sizes=tuple(widths[g] for g in layers),
                                spec=tuple(layers))
    with torch.random.fork_rng(devices=[]):  # seed the weights without touching the caller's RNG
        torch.manual_seed(seed)
        return MatFormerLM(dense).eval()


def micro_jobs(config, calibration: int = CALIBRATION_MODELS) -> list:
    """Export jobs [(name, make_model)] for every micro-model."""
    return [(name, lambda layers=layers: micro_model(config, layers)) for name, layers in micro_layouts(config, calibration)]
