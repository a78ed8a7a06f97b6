"""Micro-model design: the small dense models whose measured costs the cost table is fitted from.

One layer at each FFN width, the full-depth model at its widest width, and ``CALIBRATION_MODELS``
mixed full-depth models (random per-layer widths from a fixed seed). See ``micro_layouts`` for
why mostly mixed models. A deep model (more than ``DEEP_LAYERS`` layers) is calibrated on
shorter mixed models instead: see ``calibration_depth``.
"""

from __future__ import annotations

import dataclasses

CALIBRATION_SEED = 1234  # not the seed validate_predictor draws its specs from
# Mixed full-depth micro-models. Cross-validated on the host (fp32, the fit as shipped): 6 gave
# 2.9% mean decode error, 12 gave 2.0%.
CALIBRATION_MODELS = 12
# Deep models: export time grows with depth (one SmolLM2-width micro-model, 1 / 10 / 30 layers:
# 51 / 208 / 649 s under load here), so 13 full-depth exports of a 30-layer model are over an
# hour. Past DEEP_LAYERS, the mixed models have SHORT_DEPTH layers and there are SHORT_MODELS.
DEEP_LAYERS, SHORT_DEPTH, SHORT_MODELS = 12, 4, 6


def calibration_depth(config) -> int:
    """Layers of the mixed calibration models: the model's own depth, or ``SHORT_DEPTH`` for a
    model deeper than ``DEEP_LAYERS``. Short models keep every per-layer cost separable (with the
    one-layer models, depth 1 and SHORT_DEPTH separate the fixed part), but they cannot show a
    cache spill at full depth: ``edge.device.costfit`` fits no spill term from them, and the
    prediction stays additive (a model that deep spends its time streaming weights from memory
    anyway; ``matedge profile validate-predictor`` measures how well that holds)."""
    return config.n_layers if config.n_layers <= DEEP_LAYERS else SHORT_DEPTH


def micro_layouts(config, calibration: int | None = None) -> list[tuple[str, tuple[str, ...]]]:
    """(name, per-layer granularities) of the micro-models.

    One layer of every granularity; the full model at its widest granularity; and
    ``calibration`` mixed models of ``calibration_depth`` layers (random per-layer granularities from a
    fixed seed). Why mostly mixed models: a layer's cost depends on the working set of the whole
    model (measured here: all-XL at 23 MiB falls off a cache cliff, and an additive fit to
    uniform deep models over-predicted every mixed spec by ~9%); mixed models put each width in
    the cache regime real specs see. The widest model is there so that the cache-spill term is
    measured up to the largest spec, never extrapolated past it (full-depth calibration only).
    """
    import random

    names, depth = config.granularity_names, calibration_depth(config)
    if calibration is None:
        calibration = CALIBRATION_MODELS if depth == config.n_layers else SHORT_MODELS
    layouts = [(f"{g}x1", (g,)) for g in names]
    top = (names[-1],) * depth
    if depth == config.n_layers > 1:
        layouts.append((f"{names[-1]}x{depth}", top))
    rng, seen = random.Random(CALIBRATION_SEED), set()
    possible = len(names) ** depth - 1  # every layout but the widest
    while len(seen) < min(calibration, possible) and depth > 1:
        layers = tuple(rng.choice(names) for _ in range(depth))
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


def micro_jobs(config, calibration: int | None = None) -> list:
    """Export jobs [(name, make_model)] for every micro-model."""
    return [(name, lambda layers=layers: micro_model(config, layers)) for name, layers in micro_layouts(config, calibration)]
