"""Modes, model sizes and the training runs of the paper reproduction (bench/paper_repro.py).

Every model is trained by ``edge.train.train`` with the project's own regimes:

- ``matlm-uniform``   universal MatLM, one granularity sampled per step, p = .25 each (paper v2)
- ``matlm-uniform-seed2``  the same with the next seed: measures seed noise
- ``matlm-skewed``    the same, p = .17/.20/.22/.41 for S/M/L/XL (skewed to XL)
- ``matlm-sum``       summed loss of all granularities every step (paper v1)
- ``ofa``             one random granularity per *layer* each step (OFA-style)
- ``base-S`` .. ``base-XL``  dense baselines.

A dense baseline of size g is a universal config whose ``d_ff`` is the MatLM's width of g,
trained only at its own full width (probs 0/0/0/1). Its parameter count equals the MatLM's
uniform-g submodel exactly (same attention, norms and embedding), and it runs through the very
same training code (optimizer, schedule, data stream), so only the nesting differs.
Token accounting: baseline g trains for exactly the number of steps in which ``matlm-uniform``
drew g (replayed from the run's seeded generator), with the same batch and sequence length.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from edge import checkpoint as ckpt
from edge.config import MatFormerConfig
from edge.model import MatFormerLM
from edge.train import TrainArgs, train

SKEWED = (0.17, 0.20, 0.22, 0.41)


@dataclass(frozen=True)
class Mode:
    """Everything one benchmark mode trains and measures."""
    name: str
    preset: str
    overrides: dict
    steps: int
    batch_size: int
    seq_len: int
    lr: float
    warmup: int
    eval_tokens: int  # validation tokens per loss / consistency figure
    mm_tokens: int  # validation tokens per Mix'n'Match spec
    n_random: int  # random non-monotone specs
    n_prompts: int  # speculative decoding prompts
    prompt_len: int
    n_new: int
    ks: tuple[int, ...]  # draft lengths
    repeats: int  # timing repeats (interleaved)
    budget: str = ""


# Small presets for the repro only (not in edge/config.py). `repro` is sized so that the whole
# default mode (9 models + all measurements) fits 60 minutes on 2 idle cores.
REPRO = dict(d_model=192, n_layers=4, n_heads=6, n_kv_heads=3, d_ff=768, max_context=256)

MODES = {
    "default": Mode("default", "small", REPRO, steps=800, batch_size=16, seq_len=128, lr=2e-3, warmup=50,
                    eval_tokens=65_536, mm_tokens=32_768, n_random=24, n_prompts=4, prompt_len=32,
                    n_new=96, ks=(2, 4), repeats=3, budget="<= 60 min on 2 idle cores"),
    "quick": Mode("quick", "tiny", {}, steps=500, batch_size=16, seq_len=64, lr=3e-3, warmup=20,
                  eval_tokens=32_768, mm_tokens=16_384, n_random=16, n_prompts=3, prompt_len=16,
                  n_new=40, ks=(2, 4), repeats=3, budget="<= 8 min on 2 idle cores"),
    "smoke": Mode("smoke", "tiny", {}, steps=24, batch_size=8, seq_len=32, lr=3e-3, warmup=4,
                  eval_tokens=1024, mm_tokens=512, n_random=3, n_prompts=1, prompt_len=8,
                  n_new=12, ks=(2,), repeats=1, budget="test-suite smoke run (seconds)"),
}


@dataclass
class Run:
    """One trained model and how it was trained."""
    name: str
    model: MatFormerLM
    steps: int
    regime: str
    probs: tuple[float, ...] | None
    seed: int
    seconds: float
    d_ff: int
    tokens_per_granularity: dict[str, int] = field(default_factory=dict)


def universal_config(mode: Mode) -> MatFormerConfig:
    return MatFormerConfig.from_preset(mode.preset, **mode.overrides)


def draws(steps: int, probs, seed: int, n: int) -> list[int]:
    """Replay the granularity index that edge.train's `sample` regime drew at every step.

    edge.train seeds its granularity generator with ``seed`` and draws one multinomial per
    step from it and from nothing else, so this reproduces the run exactly.
    """
    gen = torch.Generator().manual_seed(seed)
    p = torch.tensor(probs or [1.0] * n, dtype=torch.float64)
    return [int(torch.multinomial(p / p.sum(), 1, generator=gen)) for _ in range(steps)]


def _args(mode: Mode, out: Path, seed: int, regime: str, probs, steps: int, overrides: dict) -> TrainArgs:
    return TrainArgs(preset=mode.preset, steps=steps, batch_size=mode.batch_size, seq_len=mode.seq_len,
                     lr=mode.lr, warmup=min(mode.warmup, max(1, steps // 5)), regime=regime, probs=probs,
                     eval_every=steps + 1, eval_tokens=mode.batch_size * mode.seq_len, save_every=steps,
                     seed=seed, out=str(out), resume=True, progress=False, config_overrides=overrides)


def train_one(mode: Mode, work: Path, name: str, seed: int, regime: str, probs=None,
              steps: int | None = None, overrides: dict | None = None, log=print) -> Run:
    """Train (or reuse a finished identical run in ``work/name``) and load the model."""
    steps = steps or mode.steps
    overrides = {**mode.overrides, **(overrides or {})}
    args = _args(mode, work / name, seed, regime, tuple(probs) if probs else None, steps, overrides)
    meta = ckpt.load_meta(work / name)
    same = meta.get("step") == steps and meta.get("train_args", {}).get("config_overrides") == overrides \
        and meta.get("train_args", {}).get("regime") == regime and meta.get("train_args", {}).get("seed") == seed
    t0 = time.perf_counter()
    if not same:
        log(f"  training {name}: {regime} {probs or ''} {steps} steps (seed {seed})")
        meta = train(args)
    else:
        log(f"  reusing {name} ({steps} steps, trained earlier)")
    model = ckpt.load_model(work / name)
    seconds = meta.get("train_seconds", time.perf_counter() - t0)
    return Run(name, model, steps, regime, args.probs, seed, seconds, model.config.d_ff)


def train_all(mode: Mode, work: Path, seed: int, log=print) -> dict[str, Run]:
    """Train every variant of the repro; returns {name: Run} with token accounting filled in."""
    cfg = universal_config(mode)
    names, n = cfg.granularity_names, len(cfg.granularity_names)
    tok = mode.batch_size * mode.seq_len  # tokens per step
    runs: dict[str, Run] = {}
    for name, s, regime, probs in (("matlm-uniform", seed, "sample", None),
                                   ("matlm-uniform-seed2", seed + 1, "sample", None),
                                   ("matlm-skewed", seed, "sample", SKEWED),
                                   ("matlm-sum", seed, "sum", None),
                                   ("ofa", seed, "random-layer", None)):
        run = train_one(mode, work, name, s, regime, probs, log=log)
        if regime == "sample":
            idx = draws(mode.steps, probs, s, n)
            run.tokens_per_granularity = {g: idx.count(i) * tok for i, g in enumerate(names)}
        elif regime == "sum":
            run.tokens_per_granularity = {g: mode.steps * tok for g in names}
        runs[name] = run
    counts = {g: t // tok for g, t in runs["matlm-uniform"].tokens_per_granularity.items()}
    for g in names:  # a dense model of width g, trained at its own full width ("XL" of its config)
        run = train_one(mode, work, f"base-{g}", seed, "sample", probs=(0.0,) * (n - 1) + (1.0,),
                        steps=max(1, counts[g]), overrides={"d_ff": cfg.widths[g]}, log=log)
        run.tokens_per_granularity = {g: run.steps * tok}
        runs[f"base-{g}"] = run
    return runs
