"""Modes, model sizes and the training runs of the paper reproduction (bench/paper_repro.py).

Every model is trained by ``edge.train.train`` with the project's own regimes; each variant is
trained once per seed (``Mode.seeds`` of them; seed s also fixes the data stream, so variants of
one seed see the same batches in the same order and their differences are paired):

- ``matlm-uniform``    universal MatLM, one granularity sampled per step, p = .25 each (paper v2)
- ``matlm-skewed``     the same, p = .17/.20/.22/.41 for S/M/L/XL (skewed to XL)
- ``matlm-sum-flops``  summed loss of all granularities every step (paper v1), for as many steps
                       as give it the training FLOPs of ``matlm-uniform`` (~1/G of its steps)
- ``matlm-sum-steps``  the same for the full step count (G x the FFN work; ``Mode.sum_steps_seeds``)
- ``ofa``              one random granularity per *layer* each step (OFA-style)
- ``base-eq-<g>``      dense baseline of width g for the same steps, batch and schedule as the
                       MatLM: as many tokens as the whole MatLM saw (the paper's comparison)
- ``base-drawn-<g>``   dense baseline of width g for only the steps in which ``matlm-uniform``
                       of that seed drew g (the tokens its granularity drew; a second row).

A dense baseline of size g is a universal config whose ``d_ff`` is the MatLM's width of g,
trained only at its own full width (probs 0/.../1). Its parameter count equals the MatLM's
uniform-g submodel exactly, and it runs through the very same training code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from edge import checkpoint as ckpt
from edge.config import MatFormerConfig
from edge.model import MatFormerLM
from edge.spec import flops_per_token, uniform_specs
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
    seeds: int  # seeds of every variant the verdicts compare
    sum_steps_seeds: int  # seeds of the summed-loss run at equal steps (the second row of claim 4)
    eval_tokens: int  # validation tokens per loss / consistency figure
    mm_tokens: int  # validation tokens per Mix'n'Match spec
    n_random: int  # random non-monotone specs
    n_prompts: int  # speculative decoding prompts
    prompt_len: int
    n_new: int
    ks: tuple[int, ...]  # draft lengths
    repeats: int  # timing repeats (interleaved)
    budget: str = ""


# Small presets for the repro only (not in edge/config.py). The default mode's steps and seeds are
# sized by arithmetic on the per-step times of the committed default run (bench/repro_plan.py):
# <= 90 min on 2 idle cores with two single-threaded workers.
REPRO = dict(d_model=192, n_layers=4, n_heads=6, n_kv_heads=3, d_ff=768, max_context=256)

MODES = {
    "default": Mode("default", "small", REPRO, steps=280, batch_size=16, seq_len=128, lr=2e-3, warmup=50,
                    seeds=3, sum_steps_seeds=1, eval_tokens=65_536, mm_tokens=32_768, n_random=24,
                    n_prompts=4, prompt_len=32, n_new=96, ks=(2, 4), repeats=3,
                    budget="<= 90 min on 2 idle cores"),
    "quick": Mode("quick", "tiny", {}, steps=300, batch_size=16, seq_len=64, lr=3e-3, warmup=20,
                  seeds=3, sum_steps_seeds=1, eval_tokens=32_768, mm_tokens=16_384, n_random=16,
                  n_prompts=3, prompt_len=16, n_new=40, ks=(2, 4), repeats=3,
                  budget="<= 10 min on 2 idle cores"),
    "smoke": Mode("smoke", "tiny", {}, steps=24, batch_size=8, seq_len=32, lr=3e-3, warmup=4,
                  seeds=2, sum_steps_seeds=1, eval_tokens=1024, mm_tokens=512, n_random=3,
                  n_prompts=1, prompt_len=8, n_new=12, ks=(2,), repeats=1,
                  budget="test-suite smoke run (seconds)"),
}


@dataclass
class Job:
    """One training run: a variant at one seed."""
    variant: str
    seed: int
    regime: str
    probs: tuple[float, ...] | None
    steps: int
    overrides: dict
    flops: float  # training FLOPs of the whole run (3 x forward), for scheduling and accounting
    tokens_per_granularity: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.variant}-s{self.seed}"


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


def step_flops(cfg: MatFormerConfig, regime: str, probs, tokens: int, seq_len: int) -> float:
    """Expected training FLOPs of one step (forward x 3 for forward + backward), at the mean
    causal context seq_len/2. ``sum`` runs every granularity; ``sample`` one, drawn by probs;
    ``random-layer`` averages to uniform sampling."""
    per_g = [flops_per_token(s, cfg, seq_len // 2) for s in uniform_specs(cfg).values()]
    if regime == "sum":
        f = sum(per_g)
    else:
        p = list(probs) if probs and regime == "sample" else [1.0] * len(per_g)
        f = sum(pi * fi for pi, fi in zip(p, per_g)) / sum(p)
    return 3.0 * f * tokens


def plan_jobs(mode: Mode, seed: int) -> list[Job]:
    """Every training run of the mode, longest (by FLOPs) first."""
    cfg = universal_config(mode)
    names, n = cfg.granularity_names, len(cfg.granularity_names)
    tok = mode.batch_size * mode.seq_len
    dense = (0.0,) * (n - 1) + (1.0,)
    fl = lambda c, regime, probs: step_flops(c, regime, probs, tok, mode.seq_len)  # noqa: E731
    eq_steps = max(1, round(mode.steps * fl(cfg, "sample", None) / fl(cfg, "sum", None)))
    jobs = []
    for s in range(seed, seed + mode.seeds):
        idx = draws(mode.steps, None, s, n)
        for variant, regime, probs, steps in (("matlm-uniform", "sample", None, mode.steps),
                                              ("matlm-skewed", "sample", SKEWED, mode.steps),
                                              ("matlm-sum-flops", "sum", None, eq_steps),
                                              ("ofa", "random-layer", None, mode.steps)):
            toks = {} if regime == "random-layer" else {g: steps * tok for g in names} if regime == "sum" else \
                {g: c * tok for g, c in zip(names, (draws(steps, probs, s, n).count(i) for i in range(n)))}
            jobs.append(Job(variant, s, regime, probs, steps, {}, steps * fl(cfg, regime, probs), toks))
        for g in names:
            c = MatFormerConfig.from_preset(mode.preset, **{**mode.overrides, "d_ff": cfg.widths[g]})
            for variant, steps in ((f"base-eq-{g}", mode.steps), (f"base-drawn-{g}", max(1, idx.count(names.index(g))))):
                jobs.append(Job(variant, s, "sample", dense, steps, {"d_ff": cfg.widths[g]},
                                steps * fl(c, "sample", dense), {g: steps * tok}))
    for s in range(seed, seed + mode.sum_steps_seeds):
        jobs.append(Job("matlm-sum-steps", s, "sum", None, mode.steps, {}, mode.steps * fl(cfg, "sum", None),
                        {g: mode.steps * tok for g in names}))
    return sorted(jobs, key=lambda j: -j.flops)


def _args(mode: Mode, out: Path, job: Job, overrides: dict) -> TrainArgs:
    return TrainArgs(preset=mode.preset, steps=job.steps, batch_size=mode.batch_size, seq_len=mode.seq_len,
                     lr=mode.lr, warmup=min(mode.warmup, max(1, job.steps // 5)), regime=job.regime,
                     probs=job.probs, eval_every=job.steps + 1, eval_tokens=mode.batch_size * mode.seq_len,
                     save_every=job.steps, seed=job.seed, out=str(out), resume=True, progress=False,
                     config_overrides=overrides)


def train_job(mode: Mode, work: Path, job: Job) -> dict:
    """Train ``job`` into ``work/job.name`` (or reuse a finished identical run there); returns
    its accounting (what the report's table shows), without the model."""
    overrides = {**mode.overrides, **job.overrides}
    args = _args(mode, work / job.name, job, overrides)
    meta = ckpt.load_meta(work / job.name)
    ta = meta.get("train_args", {})
    same = meta.get("step") == job.steps and ta.get("config_overrides") == overrides \
        and ta.get("regime") == job.regime and ta.get("seed") == job.seed \
        and tuple(ta.get("probs") or ()) == tuple(job.probs or ())
    t0 = time.perf_counter()
    reused = same
    if not same:
        meta = train(args)
    return {"name": job.name, "variant": job.variant, "seed": job.seed, "regime": job.regime,
            "probs": job.probs, "steps": job.steps, "d_ff": overrides.get("d_ff", universal_config(mode).d_ff),
            "flops": job.flops, "tokens_per_granularity": job.tokens_per_granularity, "reused": reused,
            "seconds": meta.get("train_seconds", time.perf_counter() - t0)}


def train_all(mode: Mode, work: Path, seed: int, jobs: int, threads: int, log=print) -> dict[str, dict]:
    """Train every run of the mode with ``jobs`` single-threaded (``threads``) workers;
    returns {run name: accounting dict}."""
    from repro_machine import run_pool  # next to this file

    planned = plan_jobs(mode, seed)
    log(f"training {len(planned)} runs with {jobs} worker(s) x {threads} thread(s)")
    done = run_pool(train_job, [(mode, work, j) for j in planned], jobs, threads, log=log,
                    label=lambda t: t[2].name)
    return {r["name"]: r for r in done}


def load_run(work: Path, name: str) -> MatFormerLM:
    """The trained model of one run."""
    return ckpt.load_model(work / name)
