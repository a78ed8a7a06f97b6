"""Elastic ExecuTorch artifact: size, per-member decode vs standalone, switching quality, the
latency controller under a competing process, and speculative decoding on the runtime.

For a universal checkpoint (default: runs/default, the model `matedge train` trains), export one elastic .pte
holding the uniform S/M/L/XL and the extra --specs (one KV cache, weights once), and every member
as its own standalone .pte in the same (tokens, input_pos) convention. Then, on
``executorch.runtime`` with one thread:

1. sizes: the elastic file against the largest member's standalone file (goal <= 1.05x) and
   against all standalone files together;
2. decode ms/token of each member in the elastic file against its standalone file, measured in
   interleaved rounds (goal: within 5%);
3. switching quality: teacher-forced loss over held-out text when the member changes every N
   tokens, reading the K/V other members wrote (shared cache) vs re-prefilling at each switch;
4. the controller: a decode target XL meets idle and S meets with half the CPU; a competing
   CPU-bound process pinned to the bench's CPU starts halfway; the elastic run and a fixed-XL
   run, tokens within target before and after, and the loss of the member schedule the
   controller chose against XL's;
5. speculative decoding: the smallest member drafts k = 1..4 tokens, XL verifies in one call;
   tokens/s against XL alone (the paper reports 1.14-1.16x).

    python bench/elastic.py [CHECKPOINT] [--specs S,S,M,M,L,XL] [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from edge.checkpoint import load_any  # noqa: E402
from edge.device.elastic import greedy, speculative, switching_quality  # noqa: E402
from edge.slicing import slice_model  # noqa: E402
from edge.spec import flops_per_token, format_spec, parse_spec  # noqa: E402
from edge.texttable import format_table  # noqa: E402
from exporters.backends import get_backend  # noqa: E402
from exporters.elastic import EagerElastic  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from elastic_controller import section_controller  # noqa: E402


def decode_ms(runner, member, prompt, n: int) -> float:
    """Median ms/token of ``n`` decode steps after a prefill of ``prompt``."""
    runner.run(prompt, 0, member)
    times, pos = [], len(prompt)
    tok = [int(prompt[-1])]
    for _ in range(n):
        t = time.perf_counter()
        runner.run(tok, pos, member)
        times.append((time.perf_counter() - t) * 1e3)
        pos += 1
    return statistics.median(times)


def open_runner(module, path: Path, members=None):
    """The backend's elastic runner on one thread (LiteRT's interpreter takes it as an argument)."""
    if module.SUFFIX == ".tflite":
        return module.ElasticLiteRTRunner(path, members, threads=1)
    return module.load_runner(path, members)


def export_all(module, model, members: dict, context: int, folder: Path):
    """(elastic runner, {member: standalone runner}, sizes in bytes) of one backend's writer."""
    el_path = folder / f"elastic{module.SUFFIX}"
    module.export_elastic(model, members, el_path, context=context, default=list(members)[-1])
    alone, sizes = {}, {"elastic": el_path.stat().st_size}
    for name, spec in members.items():
        p = folder / f"{name}{module.SUFFIX}"
        module.export_elastic(slice_model(model, spec), {name: None}, p, context=context)
        alone[name], sizes[name] = open_runner(module, p), p.stat().st_size
    return open_runner(module, el_path, list(members)), alone, sizes


# Child processes that load an artifact, run entry points once and print their peak RSS (VmHWM,
# kB). Not the parent's wait4 ru_maxrss: Linux keeps a forked child's maxrss across exec, so it
# starts at this (large) process's RSS.
PEAK = "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))"
RSS_SCRIPTS = {".pte": """
import sys, torch
import executorch.kernels.quantized  # int8 programs: the quantized embedding kernel
import executorch.extension.llm.custom_ops.custom_ops  # the LLM custom ops' kernels (the default graph)
from executorch.runtime import Runtime
prog = Runtime.get().load_program(sys.argv[1])
for name in sys.argv[2:]:
    prog.load_method(name).execute([torch.zeros(1, 4, dtype=torch.long), torch.tensor([0])])
""" + PEAK, ".tflite": """
import os, sys, tempfile, numpy as np
from ai_edge_litert.compiled_model import CompiledModel
from ai_edge_litert.cpu_options import CpuOptions
from ai_edge_litert.options import Options
# as the project's runners load it (exporters/litert_session.py): an XNNPACK weight cache that
# every signature shares, caches bound in place
tmp = tempfile.mkdtemp()
cm = CompiledModel.from_file(sys.argv[1], options=Options(cpu_options=CpuOptions(
    num_threads=1, xnnpack_weight_cache_path=os.path.join(tmp, "w.xnnpack_cache"))))
for name in sys.argv[2:]:
    ins = {}
    for k, d in cm.get_input_tensor_details(name).items():  # new buffers hold garbage: zeros
        ins[k] = cm.create_input_buffer_by_name(name, k)
        ins[k].write(np.zeros(d["shape"], d["dtype"]))
    outs = {k: ins.get(k) or cm.create_output_buffer_by_name(name, k) for k in cm.get_output_tensor_details(name)}
    cm.run_by_name(name, ins, outs)
del ins, outs, cm
__import__("shutil").rmtree(tmp)
""" + PEAK}


def peak_rss_mb(path: Path, entries: list[str]) -> float:
    """Peak RSS (MiB) of a child process that loads ``entries`` of an artifact and runs each once."""
    r = subprocess.run([sys.executable, "-c", RSS_SCRIPTS[path.suffix], str(path), *entries],
                       capture_output=True, text=True)  # the runtime's chatter stays in r.stderr
    if r.returncode:
        raise RuntimeError(f"the RSS probe of {path} failed: {r.stderr.strip()[-300:]}")
    return int(r.stdout.split()[-1]) / 1024


def entry(suffix: str, member: str | None) -> str:
    """The entry point a decode step of ``member`` calls (None: a standalone file's only one)."""
    if suffix == ".tflite":
        return f"decode_{member}"
    return "forward" if member is None else f"forward_{member}"


def section_sizes(sizes: dict, members: dict, folder: Path, suffix: str) -> None:
    largest = max(members, key=lambda m: sizes[m])
    total = sum(sizes[m] for m in members)
    print(f"\n## 1. Size: elastic {sizes['elastic'] / 1e6:.2f} MB; largest member alone ({largest}) "
          f"{sizes[largest] / 1e6:.2f} MB -> {sizes['elastic'] / sizes[largest]:.3f}x (goal <= 1.05x); "
          f"all {len(members)} standalone files {total / 1e6:.2f} MB")
    alone = peak_rss_mb(folder / f"{largest}{suffix}", [entry(suffix, largest if suffix == ".tflite" else None)])
    el = folder / f"elastic{suffix}"
    one = peak_rss_mb(el, [entry(suffix, largest)])
    every_ = peak_rss_mb(el, [entry(suffix, m) for m in members])
    print(f"   peak RSS (runtime in a child process): {largest} alone {alone:.0f} MiB; elastic with "
          f"{largest} run {one:.0f} MiB; with all {len(members)} members run {every_:.0f} MiB")


def section_decode(elastic, alone, members, prompt, rounds: int, n: int) -> dict:
    """Interleaved rounds: each member in the elastic file and standalone, which goes first
    alternating between rounds (the second of a pair found the caches warmer); medians over rounds."""
    el = {m: [] for m in members}
    st = {m: [] for m in members}
    for r in range(rounds):
        for m in members:
            pair = [(el, elastic, m), (st, alone[m], None)]
            for times, runner, member in pair[::-1] if r % 2 else pair:
                times[m].append(decode_ms(runner, member, prompt, n))
    rows, idle = [], {}
    for m, spec in members.items():
        e, s = statistics.median(el[m]), statistics.median(st[m])
        # the ratio within each round, then its median: a shared machine's drift between rounds cancels
        paired = statistics.median(a / b for a, b in zip(el[m], st[m]))
        idle[m] = e
        rows.append([m, format_spec(spec), round(s, 3), round(e, 3), f"{100 * (e / s - 1):+.1f}%",
                     f"{100 * (paired - 1):+.1f}%"])
    print(f"\n## 2. Decode ms/token, elastic vs standalone (median of {rounds} interleaved rounds x {n} tokens)")
    print(format_table(["member", "spec", "standalone", "elastic", "diff", "paired diff"], rows))
    return idle


def section_switching(elastic, windows, members) -> list:
    small, large = members[0], members[-1]
    rows = []
    for pair in [[small, large]] + ([[members[-2], large]] if len(members) > 2 else []):
        for n in (1, 4, 16, 64):
            q = switching_quality(elastic, windows, pair, n)
            rows.append(["<->".join(pair), n, round(q["loss_reprefill"], 4), round(q["loss_shared"], 4),
                         f"{q['loss_shared'] - q['loss_reprefill']:+.4f}", f"{100 * q['agreement']:.1f}%"])
    print(f"\n## 3. Switching every N tokens: loss (nats/token) over {q['tokens']} held-out tokens")
    print(format_table(["members", "N", "re-prefill", "shared cache", "cost", "greedy agreement"], rows))
    return rows


def section_speculative(elastic, members, prompts, n: int, rounds: int, decode) -> None:
    """k = 1..4 drafted tokens per verifier call over several prompts; times summed over prompts."""
    draft, verify = members[0], members[-1]
    base, rows = [], []
    spec = {k: [] for k in range(1, 5)}
    for _ in range(rounds):
        t = time.perf_counter()
        want = [greedy(elastic, p, n, verify) for p in prompts]
        base.append(time.perf_counter() - t)
        for k in spec:
            t = time.perf_counter()
            runs = [speculative(elastic, p, n, draft, verify, k) for p in prompts]
            assert [r.tokens for r in runs] == want, "speculative output differs from the verifier's greedy output"
            spec[k].append((time.perf_counter() - t, sum(r.accepted for r in runs), sum(r.drafted for r in runs)))
    b, total = statistics.median(base), n * len(prompts)
    for k, runs in spec.items():
        s = statistics.median(r[0] for r in runs)
        rows.append([k, f"{100 * runs[0][1] / max(1, runs[0][2]):.0f}%", round(total / s, 1), f"{b / s:.2f}x"])
    print(f"\n## 5. Speculative decoding: {draft} drafts, {verify} verifies, {n} tokens after each of "
          f"{len(prompts)} prompts; {verify} alone {total / b:.1f} tokens/s (output identical in every run; "
          "paper: 1.14-1.16x)")
    for p, w in zip(prompts, want):
        print(f"   {decode(p)!r} -> {decode(w)[:60]!r}")
    print(format_table(["k", "acceptance", "tokens/s", "speed-up"], rows))


def eager_quality(model, members: dict, context: int, windows, prompt, n: int) -> None:
    """Sections 3 and 5's acceptance on the eager graph (no export, no runtime timings)."""
    runner = EagerElastic(model, members, context)
    print("\n(eager elastic graph in torch: quality figures only; timings need the exported .pte)")
    section_switching(runner, windows, list(members))
    draft, verify = list(members)[0], list(members)[-1]
    want = greedy(runner, prompt, n, verify)
    rows = []
    for k in range(1, 5):
        st = speculative(runner, prompt, n, draft, verify, k)
        assert st.tokens == want
        rows.append([k, f"{100 * st.acceptance:.0f}%", round(n / max(1, st.rounds), 2)])
    print(f"\n## 5. Speculative acceptance: {draft} drafts, {verify} verifies, {n} tokens (output identical)")
    print(format_table(["k", "acceptance", "tokens per verifier call"], rows))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?", help="universal checkpoint (default: the demo model)")
    ap.add_argument("--uniform", default="", help="uniform members, e.g. S,XL (default: every granularity)")
    ap.add_argument("--specs", default="", help="extra member specs, ';'-separated (e.g. S,S,M,M,L,XL)")
    ap.add_argument("--backend", choices=[n for n in ("executorch", "litert")], default="executorch",
                    help="whose elastic artifact to export and run (default: executorch)")
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--target-ms", type=float,
                    help="section 4's decode target (default: XL fits it idle, S with half the CPU)")
    ap.add_argument("--quick", action="store_true", help="fewer tokens everywhere (a smoke run)")
    ap.add_argument("--eager", action="store_true",
                    help="no export: switching quality and speculative acceptance on the eager graph only")
    ap.add_argument("--sections", default="1,2,3,4,5",
                    help="sections to run after sizes and decode (1 and 2 always run), e.g. 1,2 (default: all)")
    args = ap.parse_args(argv)
    sections = {int(x) for x in args.sections.split(",") if x.strip()}
    torch.set_num_threads(1)
    model, ckpt = load_any(Path(args.checkpoint) if args.checkpoint else None)
    cfg = model.config
    members = {g: parse_spec(g, cfg) for g in (args.uniform.split(",") if args.uniform else cfg.granularity_names)}
    for i, s in enumerate(filter(None, args.specs.split(";"))):
        members[f"P{i + 1}"] = parse_spec(s, cfg)
    members = dict(sorted(members.items(), key=lambda kv: flops_per_token(kv[1], cfg)))
    from edge.data import load_corpus

    val = load_corpus().val
    n = 16 if args.quick else 64
    prompt = val[:16].tolist()
    windows = [val[i * 64:(i + 1) * 64].tolist() for i in range(2 if args.quick else 8)]
    n_spec = min(32 if args.quick else 96, args.context - len(prompt) - 1)  # prompt + output fit the cache
    module = get_backend(args.backend).elastic_exporter()
    print(f"# Elastic artifact bench: {ckpt}, context {args.context}, {args.backend}, 1 thread")
    if args.eager:
        eager_quality(model, members, args.context, windows, prompt, n_spec)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        from exporters.logs import quiet_output

        print(f"(exporting the elastic file and {len(members)} standalone files; converter log: {tmp}/export.log)")
        with quiet_output(Path(tmp) / "export.log"):
            elastic, alone, sizes = export_all(module, model, members, args.context, Path(tmp))
        section_sizes(sizes, members, Path(tmp), module.SUFFIX)
        idle = section_decode(elastic, alone, members, prompt, args.rounds, n)  # the controller needs it
        if 3 in sections:
            section_switching(elastic, windows, [m for m in members if m in cfg.granularity_names] or list(members))
        if 4 in sections:
            section_controller(elastic, prompt, windows[:2], list(members), idle, 100 if args.quick else 2000,
                               args.target_ms)
        if 5 in sections:
            from edge.tokenizer import load_tokenizer

            tok = load_tokenizer(Path(ckpt))
            prompts = [val[i * 1024:i * 1024 + 16].tolist() for i in range(3)]
            section_speculative(elastic, list(members), prompts, n_spec, args.rounds, tok.decode)
    return 0


if __name__ == "__main__":
    sys.exit(main())
