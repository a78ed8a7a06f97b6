"""Measurements of the paper reproduction: losses, Mix'n'Match, consistency, speculative decoding.

All losses are mean next-token cross-entropy in nats per byte-token on the same deterministic
validation windows (edge.data.eval_batches), so differences between models are paired.
"""

from __future__ import annotations

import random
import statistics

import torch

from edge.evaluate import consistency, eval_loss
from edge.generate import speculative_generate, timed_greedy
from edge.spec import is_monotone, monotone_family, param_count, random_spec, uniform_specs

MATLM = ("matlm-uniform", "matlm-uniform-seed2", "matlm-skewed", "matlm-sum", "ofa")


def val_losses(runs: dict, val: torch.Tensor, mode) -> dict[str, dict[str, float]]:
    """{variant: {granularity: loss}}; a baseline's entry holds only its own granularity."""
    cfg = runs["matlm-uniform"].model.config
    out: dict[str, dict[str, float]] = {}
    for name in MATLM:
        m = runs[name].model
        out[name] = {g: eval_loss(m, val, s, mode.seq_len, mode.eval_tokens) for g, s in uniform_specs(cfg).items()}
    out["baseline"] = {}
    for g in cfg.granularity_names:
        out["baseline"][g] = eval_loss(runs[f"base-{g}"].model, val, None, mode.seq_len, mode.eval_tokens)
    return out


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


def mixnmatch(model, val: torch.Tensor, mode, seed: int) -> list[dict]:
    """Loss and parameters of every monotone spec and of random non-monotone specs."""
    cfg = model.config
    specs = [(s, True) for s in monotone_family(cfg)]
    specs += [(s, False) for s in _non_monotone(cfg, mode.n_random, random.Random(seed))]
    return [{"spec": ",".join(s), "monotone": mono, "params": param_count(s, cfg),
             "uniform": len(set(s)) == 1, "loss": eval_loss(model, val, s, mode.seq_len, mode.mm_tokens)}
            for s, mono in specs]


def consistency_rows(runs: dict, val: torch.Tensor, mode) -> dict[str, dict[str, dict[str, float]]]:
    """Agreement % / KL of each smaller model with its own family's XL (the paper's setting),
    plus the MatLM submodels against the *baseline* XL."""
    cfg = runs["matlm-uniform"].model.config
    u = uniform_specs(cfg)
    smaller = cfg.granularity_names[:-1]
    args = (val, mode.seq_len, mode.eval_tokens)
    out: dict[str, dict] = {}
    for name in ("matlm-uniform", "matlm-uniform-seed2"):
        m = runs[name].model
        out[name] = {g: consistency(m, u["XL"], m, u[g], *args) for g in smaller}
    base_xl = runs["base-XL"].model
    out["baseline"] = {g: consistency(base_xl, None, runs[f"base-{g}"].model, None, *args) for g in smaller}
    m = runs["matlm-uniform"].model
    out["matlm-vs-baseline-XL"] = {g: consistency(base_xl, None, m, u[g], *args) for g in smaller}
    return out


def _prompts(val: torch.Tensor, mode) -> list[list[int]]:
    """n_prompts windows of real validation text, spread over the stream."""
    step = (len(val) - mode.prompt_len) // max(1, mode.n_prompts)
    return [val[i * step: i * step + mode.prompt_len].tolist() for i in range(mode.n_prompts)]


def _decoders(runs: dict, k: int):
    """(label, function(prompt, n_new) -> GenerationStats) of every decoding set-up at draft length k."""
    mat, L = runs["matlm-uniform"].model, runs["matlm-uniform"].model.config.n_layers
    S, XL = ("S",) * L, ("XL",) * L
    bs, bxl = runs["base-S"].model, runs["base-XL"].model
    return [
        ("MatLM XL alone", lambda p, n: timed_greedy(mat, p, n, XL)),
        ("MatLM S alone", lambda p, n: timed_greedy(mat, p, n, S)),
        (f"MatLM S->XL k={k}", lambda p, n: speculative_generate(mat, S, mat, XL, p, n, k)),
        (f"MatLM S->XL k={k} shared cache", lambda p, n: speculative_generate(mat, S, mat, XL, p, n, k, True)),
        ("Baseline XL alone", lambda p, n: timed_greedy(bxl, p, n, None)),
        (f"Baseline S->XL k={k}", lambda p, n: speculative_generate(bs, None, bxl, None, p, n, k)),
    ]


def spec_decoding(runs: dict, val: torch.Tensor, mode, threads: int = 1) -> list[dict]:
    """Tokens/s and acceptance of every set-up; repeats interleaved so load drifts hit all alike.

    Runs with ``threads`` intra-op threads (1: batch-1 decoding of a small model is
    overhead-bound, and one thread is the least disturbed by other processes on a shared CPU).
    """
    prompts, old = _prompts(val, mode), torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        setups = {}
        for k in mode.ks:
            for label, fn in _decoders(runs, k):
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
