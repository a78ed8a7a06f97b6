"""The text of results/paper_repro.md: the verdict table and the report around the tables."""

from __future__ import annotations

import repro_claims as claims
import repro_report as report


def _diffs(v: dict, keys, nd: int = 4, unit: str = "") -> str:
    return ", ".join(f"{g} {report.pm(v['diffs'][g], v['noise'][g], nd, unit)}" for g in keys)


def claim_rows(v: dict, names) -> list[list[str]]:
    """One row per claim: what the paper says, what we measured (mean ± 95% half-width over
    seeds), the verdict."""
    small, xl = names[:-1], names[-1]
    pp = lambda c: _diffs(v[c], small, 2, " pp")  # noqa: E731
    rows = [
        ["1", "MatLM S/M/L beat same-size baselines (78M S: −0.137; 850M: −0.047/−0.037/−0.024)",
         "**equal tokens**: baseline − MatLM " + _diffs(v["1"], small), v["1"]["verdict"]],
        ["1d", "... second row: each baseline given only the tokens its granularity drew",
         "drawn tokens: baseline − MatLM " + _diffs(v["1d"], small), v["1d"]["verdict"]],
        ["2", "MatLM XL not worse than baseline XL (78M −0.09; 850M +0.006)",
         "**equal tokens**: baseline − MatLM: " + _diffs(v["2"], [xl]), v["2"]["verdict"]],
        ["2d", "... second row: tokens drawn", "drawn tokens: baseline − MatLM: " + _diffs(v["2d"], [xl]), v["2d"]["verdict"]],
        ["3", "sampling skewed to XL improves XL (at some cost to S)",
         "uniform − skewed: " + _diffs(v["3"], names), v["3"]["verdict"]],
        ["4", "sampling (v2) is as good as summed loss (v1) at ~1/G of the compute",
         "**equal training FLOPs** (verdict): summed − uniform " + _diffs(v["4"], names), v["4"]["verdict"]],
        ["4s", "... second row: at equal steps (summed does ~G× the work)",
         "equal steps: summed − uniform " + _diffs(v["4s"], names), v["4s"]["verdict"]],
    ]
    m5, m5b = v["5"], v["5b"]
    rows += [
        ["5", "Mix'n'Match monotone specs lie on the S–XL curve",
         (f"median residual {report.pm(m5['median_residual'], m5['noise'])}, max {m5['max_residual']:+.4f} "
          f"(n={m5['n_specs']} specs × {m5['n']} seeds)") if m5["n"] else "no monotone specs", m5["verdict"]],
        ["5b", "monotone specs beat random non-monotone ones of equal size",
         (f"median residual non-monotone − monotone {report.pm(m5b['diff'], m5b['noise'])}"
          if m5b["n"] else "no non-monotone specs"), m5b["verdict"]],
        ["6", "MatLM submodels are more consistent with their XL than baselines with theirs (up to +11.5%)",
         "**equal tokens**: agreement MatLM − baseline " + pp("6"), v["6"]["verdict"]],
        ["6d", "... second row: tokens drawn", "drawn tokens: agreement MatLM − baseline " + pp("6d"), v["6d"]["verdict"]],
        ["6b", "... also when both are compared with the same reference, the baseline XL",
         "agreement with the equal-token baseline XL, MatLM − baseline: " + pp("6b"), v["6b"]["verdict"]],
        ["7a", "S drafts, XL verifies: faster than XL alone (paper 1.14x)",
         f"best k={v['7a']['best_k']}: {v['7a']['speedup']:.2f}x (noise ±{v['7a']['noise']:.2f})", v["7a"]["verdict"]],
        ["7b", "a shared attention KV cache adds speed (paper 1.16x vs 1.14x)",
         f"shared / separate at k={v['7b']['k']}: {v['7b']['ratio']:.3f} (noise ±{v['7b']['noise']:.2f})",
         v["7b"]["verdict"]],
        ["7c", "the MatLM pair speeds up more than the baseline pair (paper 1.14x vs 1.10x)",
         f"speed-up difference at k={v['7c']['k']}: {v['7c']['diff']:+.3f} (noise ±{v['7c']['noise']:.2f})",
         v["7c"]["verdict"]],
        ["8", "OFA-style training is bell-shaped: weakest at S and XL",
         "OFA − MatLM: " + ", ".join(f"{g} {x:+.4f}" for g, x in v["8"]["diffs"].items())
         + f"; extremes − middle {report.pm(v['8']['extremes_minus_middle'], v['8']['noise'])}", v["8"]["verdict"]],
    ]
    return rows


def machine_line(info: dict) -> str:
    """The machine and its load, as measured during the run."""
    ld = info["load"]
    fmt = lambda la: "/".join(f"{x:.2f}" for x in la) if la else "n/a"  # noqa: E731
    during = (f"; 1-minute load sampled every {ld['every_s']:.0f} s during the run: mean {ld['mean']:.2f}, "
              f"max {ld['max']:.2f} (n={ld['n']})") if ld["n"] else ""
    return (f"{info['cpu_model']}, {info['cpus']} logical CPUs; {info['jobs']} worker process(es) × "
            f"{info['threads']} torch thread(s); load average (1/5/15 min) before {fmt(ld['before'])}, after "
            f"{fmt(ld['after'])}{during}")


def command(info: dict) -> str:
    flag = "" if info["mode"] == "default" else " --" + info["mode"]
    return (f"python bench/paper_repro.py{flag} --seed {info['seed']} --jobs {info['jobs']} "
            f"--threads {info['threads']}")


def header(info: dict) -> list[str]:
    return [
        "# MatFormer paper claims at small scale: a measured reproduction",
        f"Mode **{info['mode']}** ({info['budget']}), seeds **{info['seed']}–{info['seed'] + info['seeds'] - 1}**, "
        f"wall time **{info['wall_s'] / 60:.1f} min** (training {info['train_s'] / 60:.1f} min, measuring "
        f"{info['measure_s'] / 60:.1f} min), {info['date']}. Machine: {machine_line(info)}. torch {info['torch']}, "
        f"Python {info['python']}. Produced by `{command(info)}`; raw numbers in `paper_repro.json`."
        + (f" Note: {info['note']}" if info["note"] else "")
        + (f" Verdicts and text re-rendered from the stored measurements (`--rerender`) at {info['rerendered']}."
           if info.get("rerendered") else ""),
        "## Verdicts",
        f"Rules (fixed in `bench/repro_claims.py` before the run): every variant is trained with "
        f"{info['seeds']} seeds (the summed-loss run at equal steps with {info['sum_steps_seeds']}); seed s of "
        "every variant sees the same data stream, so a difference is taken per seed and reported as its mean ± "
        "the 95% half-width of Student's t over seeds (at least "
        f"{claims.LOSS_FLOOR} nats or {claims.AGREE_FLOOR} agreement points; a one-seed side takes the uniform "
        "MatLM's seed spread). Speed noise = the timing spread of the compared set-ups. A 'beats' claim holds "
        "only if every difference exceeds its noise, does not hold if none does and one goes the other way "
        "beyond it, else is inconclusive; a 'not worse' claim holds unless a difference goes against it beyond "
        "its noise. Headline rows (1, 2, 6) compare with dense baselines trained for the same steps, batch and "
        "schedule as the MatLM; rows 1d, 2d, 6d with baselines given only the tokens their granularity drew. "
        "Claim 4's verdict is at equal training FLOPs; 4s is the same comparison at equal steps.",
    ]


def _sum_compute(runs: dict) -> str:
    """Steps, FLOPs and measured seconds of the uniform and the equal-FLOPs summed run."""
    pick = lambda v: [r for r in runs.values() if r["variant"] == v]  # noqa: E731
    u, s = pick("matlm-uniform"), pick("matlm-sum-flops")
    if not u or not s:
        return ""
    mean = lambda rs, k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
    return (f"Claim 4 at equal compute: the summed-loss run gets {s[0]['steps']} steps against the uniform "
            f"MatLM's {u[0]['steps']} ({mean(s, 'flops') / 1e12:.3g} vs {mean(u, 'flops') / 1e12:.3g} training "
            f"TFLOPs by formula, `edge.spec.flops_per_token` × 3); measured training time "
            f"{mean(s, 'seconds'):.0f} s vs {mean(u, 'seconds'):.0f} s per run (mean over seeds, same workers).")


def render(info, runs, losses, mm, cons, spec, v, mode) -> str:
    """The markdown report."""
    names = list(info["params"])
    c = info["config"]
    tok = mode.batch_size * mode.seq_len
    parts = header(info) + [
        report._md_table(["#", "claim (paper)", "measured here (mean ± 95% half-width over seeds)", "verdict"],
                         claim_rows(v, names)),
        "## Set-up and token accounting",
        f"Model: Llama-style MatFormer, d_model {c['d_model']}, {c['n_layers']} layers, {c['n_heads']} heads "
        f"({c['n_kv_heads']} KV), d_ff {c['d_ff']} (S/M/L/XL = 1/8, 1/4, 1/2, 1), byte tokens (vocab "
        f"{c['vocab_size']}); parameters S/M/L/XL: " + ", ".join(f"{g} {p / 1e6:.3f}M" for g, p in info["params"].items())
        + f". Every run: {mode.steps} steps unless stated, batch {mode.batch_size} × {mode.seq_len} tokens "
        f"= {tok:,} tokens/step, AdamW lr {mode.lr}, cosine schedule, default corpus (Python docs + stdlib).",
        "Each dense baseline g is a model of the MatLM's g width (d_ff below), trained at full width. "
        "**Equal tokens** (`base-eq-*`, the paper's comparison): the same steps, batch and schedule as the "
        "universal MatLM, so it sees as many tokens as the whole MatLM did. **Tokens drawn** (`base-drawn-*`): "
        "only the steps in which the uniform MatLM of that seed drew g (replayed from its seeded generator), "
        "with a schedule as short; this under-trains the baselines, since the MatLM's shared weights are "
        "updated on every step. The summed-loss runs train every granularity on every step.",
        report.accounting_table(runs, names),
        _sum_compute(runs),
        "## Validation loss (nats per byte-token)",
        f"{mode.eval_tokens:,} validation tokens, the same windows for every model. The paper's losses use "
        "a 256k-token vocabulary: compare gaps and signs, not absolute values.",
        report.loss_table(losses, names), "", report.gap_table(losses, names, lambda a, b, ref: claims.compare(a, b, claims.LOSS_FLOOR, ref)),
        "![losses](paper_repro_losses.png)",
        "## Mix'n'Match",
        f"All {sum(p['monotone'] for p in mm[0])} monotone specs (granularity non-decreasing with depth) and "
        f"{sum(not p['monotone'] for p in mm[0])} random non-monotone specs of the uniform MatLM of each seed, "
        f"{mode.mm_tokens:,} validation tokens each. Residual = loss minus the MatLM S–M–L–XL curve "
        "(piecewise linear in log parameters, from the uniform specs on the same windows) at the spec's "
        "size; negative = better than the curve. The plot shows the first seed.",
        "![mixnmatch](paper_repro_mixnmatch.png)",
        "## Consistency with XL",
        "Greedy next-token agreement and KL(XL ‖ submodel) on the validation windows; each family against "
        "its own XL (the paper's setting), plus the MatLM submodels against the equal-token baseline XL.",
        report.consistency_table(cons, names),
        "## Speculative decoding on this CPU",
        f"Models of seed {info['seed']} (MatLM and the equal-token baselines). Greedy, batch 1, eager PyTorch "
        f"with a KV cache (`edge/generate.py`), 1 torch thread, run after all other work of the benchmark; "
        f"{mode.n_prompts} validation prompts of {mode.prompt_len} tokens, {mode.n_new} new tokens each, "
        f"{mode.repeats} interleaved repeats (median; spread = half-range). Times include prefill. "
        "'shared cache': one KV cache whose committed prefix always holds the verifier's K/V (the draft "
        "reads them and writes scratch K/V that the verifier's pass overwrites). Paper: "
        + ", ".join(f"{k} {x:.2f}x" for k, x in report.PAPER_SPEEDUP.items()) + ".",
        report.spec_table(spec),
        "![specdec](paper_repro_specdec.png)",
        "## Caveats",
        "- Scale: models of at most a few million parameters trained for minutes, against the paper's "
        f"78M–850M models on billions of tokens; {info['seeds']} seeds per variant are all the noise "
        "estimate there is (a t interval over so few seeds is wide).",
        "- Timings (training seconds, decoding speed) depend on the machine's load, measured above. The greedy "
        "text of such small models is repetitive, which inflates draft acceptance; acceptance depends on the "
        "prompts.",
    ]
    return "\n\n".join(p for p in parts if p != "") + "\n"
