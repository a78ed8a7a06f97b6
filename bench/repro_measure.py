"""Measurements of the paper reproduction: losses, Mix'n'Match, consistency, speculative decoding.

All losses are mean next-token cross-entropy in nats per byte-token on the same deterministic
validation windows (edge.data.eval_batches), so differences between models are paired.
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import torch

from repro_train import load_run, universal_config

from edge.data import load_corpus
from edge.evaluate import consistency, eval_loss
from edge.generate import speculative_generate, timed_greedy
from edge.spec import is_monotone, monotone_family, param_count, random_spec, uniform_specs

MATLM = ("matlm-uniform", "matlm-skewed", "matlm-sum-flops", "matlm-sum-steps", "ofa")
BASELINES = ("baseline-eq", "baseline-drawn")  # families of dense models: base-eq-<g>, base-drawn-<g>


def _variant_of(family: str, g: str) -> str:
    return f"base-{family.split('-', 1)[1]}-{g}"


def seed_losses(mode, work: Path, seed: int, have: set[str]) -> dict[str, dict[str, float]]:
    """{variant or baseline family: {granularity: loss}} of the runs of one seed (``have``: the
    names of the finished runs)."""
    val, cfg = load_corpus().val, universal_config(mode)
    out: dict[str, dict[str, float]] = {}
    for name in MATLM:
        if f"{name}-s{seed}" in have:
            m = load_run(work, f"{name}-s{seed}")
            out[name] = {g: eval_loss(m, val, s, mode.seq_len, mode.eval_tokens) for g, s in uniform_specs(cfg).items()}
    for fam in BASELINES:
        out[fam] = {g: eval_loss(load_run(work, f"{_variant_of(fam, g)}-s{seed}"), val, None, mode.seq_len,
                                 mode.eval_tokens) for g in cfg.granularity_names}
    return out


def seed_consistency(mode, work: Path, seed: int) -> dict[str, dict[str, dict[str, float]]]:
    """Agreement % / KL of each smaller model with its own family's XL (the paper's setting), for
    the MatLM and both baseline families, plus the MatLM submodels against the equal-token
    baseline XL; one seed."""
    val, cfg = load_corpus().val, universal_config(mode)
    u, smaller = uniform_specs(cfg), cfg.granularity_names[:-1]
    args = (val, mode.seq_len, mode.eval_tokens)
    m = load_run(work, f"matlm-uniform-s{seed}")
    out: dict[str, dict] = {"matlm-uniform": {g: consistency(m, u["XL"], m, u[g], *args) for g in smaller}}
    for fam in BASELINES:
        xl = load_run(work, f"{_variant_of(fam, cfg.granularity_names[-1])}-s{seed}")
        out[fam] = {g: consistency(xl, None, load_run(work, f"{_variant_of(fam, g)}-s{seed}"), None, *args)
                    for g in smaller}
    base_xl = load_run(work, f"{_variant_of('baseline-eq', cfg.granularity_names[-1])}-s{seed}")
    out["matlm-vs-baseline-XL"] = {g: consistency(base_xl, None, m, u[g], *args) for g in smaller}
    return out


def seed_measures(mode, work: Path, seed: int, have: set[str]) -> dict:
    """Losses and consistency of one seed (one worker task)."""
    return {"losses": seed_losses(mode, work, seed, have), "consistency": seed_consistency(mode, work, seed)}


def _non_monotone(cfg, n: int, rng: random.Random) -> list[tuple[str, ...]]:
    """n distinct random specs that are not monotone (all of them if fewer exist)."""
    seen: set = set()
    for _ in range(200 * max(1, n)):
        if len(seen) >= n:
            break
        s = random_spec(cfg, rng)
        if not is_monotone(s, cfg):
            seen.add(s)
    return sorted(seen)


def mixnmatch(mode, work: Path, seed: int, spec_seed: int) -> list[dict]:
    """Loss and parameters of every monotone spec and of random non-monotone specs (drawn with
    ``spec_seed``: the same specs for every seed) of the uniform MatLM of ``seed``."""
    model, val = load_run(work, f"matlm-uniform-s{seed}"), load_corpus().val
    cfg = model.config
    specs = [(s, True) for s in monotone_family(cfg)]
    specs += [(s, False) for s in _non_monotone(cfg, mode.n_random, random.Random(spec_seed))]
    return [{"spec": ",".join(s), "monotone": mono, "params": param_count(s, cfg),
             "uniform": len(set(s)) == 1, "loss": eval_loss(model, val, s, mode.seq_len, mode.mm_tokens)}
            for s, mono in specs]


def gather(per_seed: list[dict]) -> tuple[dict, dict]:
    """Per-seed losses / consistency -> {variant: {g: [value per seed]}} (seed order; a variant
    with fewer seeds has a shorter list) and {family: {g: {metric: [value per seed]}}}."""
    losses: dict[str, dict[str, list]] = {}
    cons: dict[str, dict[str, dict[str, list]]] = {}
    for r in per_seed:
        for v, row in r["losses"].items():
            for g, x in row.items():
                losses.setdefault(v, {}).setdefault(g, []).append(x)
        for fam, row in r["consistency"].items():
            for g, d in row.items():
                for k, x in d.items():
                    cons.setdefault(fam, {}).setdefault(g, {}).setdefault(k, []).append(x)
    return losses, cons


def _prompts(val: torch.Tensor, mode) -> list[list[int]]:
    """n_prompts windows of real validation text, spread over the stream."""
    step = (len(val) - mode.prompt_len) // max(1, mode.n_prompts)
    return [val[i * step: i * step + mode.prompt_len].tolist() for i in range(mode.n_prompts)]


def _decoders(models: dict, k: int):
    """(label, function(prompt, n_new) -> GenerationStats) of every decoding set-up at draft length k;
    ``models``: the uniform MatLM and the equal-token S and XL baselines of one seed."""
    mat, L = models["matlm"], models["matlm"].config.n_layers
    S, XL = ("S",) * L, ("XL",) * L
    bs, bxl = models["base-S"], models["base-XL"]
    return [
        ("MatLM XL alone", lambda p, n: timed_greedy(mat, p, n, XL)),
        ("MatLM S alone", lambda p, n: timed_greedy(mat, p, n, S)),
        (f"MatLM S->XL k={k}", lambda p, n: speculative_generate(mat, S, mat, XL, p, n, k)),
        (f"MatLM S->XL k={k} shared cache", lambda p, n: speculative_generate(mat, S, mat, XL, p, n, k, True)),
        ("Baseline XL alone", lambda p, n: timed_greedy(bxl, p, n, None)),
        (f"Baseline S->XL k={k}", lambda p, n: speculative_generate(bs, None, bxl, None, p, n, k)),
    ]


def spec_decoding(mode, work: Path, seed: int, threads: int = 1) -> list[dict]:
    """Tokens/s and acceptance of every set-up with the models of ``seed``; repeats interleaved so
    load drifts hit all alike. Run it with no other work of this benchmark going on.

    Runs with ``threads`` intra-op threads (1: batch-1 decoding of a small model is
    overhead-bound, and one thread is the least disturbed by other processes on a shared CPU).
    """
    cfg = universal_config(mode)
    s, xl = cfg.granularity_names[0], cfg.granularity_names[-1]
    models = {"matlm": load_run(work, f"matlm-uniform-s{seed}"), "base-S": load_run(work, f"base-eq-{s}-s{seed}"),
              "base-XL": load_run(work, f"base-eq-{xl}-s{seed}")}
    prompts, old = _prompts(load_corpus().val, mode), torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        setups = {}
        for k in mode.ks:
            for label, fn in _decoders(models, k):
                setups.setdefault(label, (k, fn))
        reference = {}  # greedy output of each XL, to check exactness
        rows = {label: {"k": k, "tps": [], "accepted": 0, "drafted": 0, "match": 0} for label, (k, _) in setups.items()}
        for label, (_, fn) in setups.items():  # warm-up (untimed)
            fn(prompts[0], min(8, mode.n_new))
        for _ in range(mode.repeats):
            for label, (_, fn) in setups.items():
                n_tok, secs = 0, 0.0
                for i, p in enumerate(prompts):
                    st = fn(p, mode.n_new)
                    n_tok, secs = n_tok + len(st.tokens), secs + st.seconds
                    rows[label]["accepted"] += st.accepted
                    rows[label]["drafted"] += st.drafted
                    family = "MatLM" if label.startswith("MatLM") else "Baseline"
                    if label.endswith("XL alone"):
                        reference[(family, i)] = st.tokens
                    elif "->" in label:
                        rows[label]["match"] += int(st.tokens == reference.get((family, i)))
                rows[label]["tps"].append(n_tok / secs)
    finally:
        torch.set_num_threads(old)
    return [_summarise(label, r, rows, mode) for label, r in rows.items()]


def _summarise(label: str, r: dict, rows: dict, mode) -> dict:
    """Median tokens/s, spread (half-range / median), speed-up against the family's XL alone."""
    tps = statistics.median(r["tps"])
    base = "MatLM XL alone" if label.startswith("MatLM") else "Baseline XL alone"
    spread = (max(r["tps"]) - min(r["tps"])) / 2 / tps if len(r["tps"]) > 1 else float("nan")
    out = {"setup": label, "k": r["k"] if "->" in label else None, "tokens_per_s": tps, "spread": spread,
           "speedup": tps / statistics.median(rows[base]["tps"]),
           "acceptance": r["accepted"] / r["drafted"] if r["drafted"] else None,
           "exact": None}
    if "->" in label:
        out["exact"] = r["match"] / (mode.repeats * mode.n_prompts)
    return out


def call(fn, *args):
    """Run one measuring task (a picklable entry point for the worker pool)."""
    return fn(*args)
