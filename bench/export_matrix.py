"""Export matrix: artifact size, prefill and decode latency for every backend x precision.

For the default model (or CHECKPOINT, or random weights of --preset) at uniform specs (default
S and XL), export every backend x precision and time each artifact in its own runtime on this
CPU with --threads threads (default 1): prefill of T tokens, and decode ms/token (median of
--runs runs after --warmup). Torch eager runs the same static-KV-cache decoding wrapper beside
them (and, for reference, the plain model's forward, which has no cache and recomputes the
prompt for each token). The last table is decode ms/token per backend x precision, one column
per spec, and the XL/S ratio. (Latency does not depend on the weights' values: --preset small
times the demo model's dims without a trained checkpoint.)

Core ML packages need macOS to run: off macOS their size is reported and the timings are "n/a".
With --llama-bench PATH, llama.cpp decodes the same weights (F32 and Q8_0 GGUF files written by
bench/llama_cpp_decode.py, read back and checked) with the same threads, in rows of their own.

Targets reported against: int8 size <= 0.30x fp32 (same backend); exported decode >= 3x faster
than torch eager with the same cache.

    python bench/export_matrix.py [CHECKPOINT | --preset small] [--specs S,XL] [--threads 1] [--runs 20]
                                  [--llama-bench PATH]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, ROOT / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from edge import checkpoint as ckpt  # noqa: E402
from edge.checkpoint import load_any  # noqa: E402
from edge.data import load_corpus  # noqa: E402
from edge.slicing import slice_model  # noqa: E402
from edge.spec import parse_spec  # noqa: E402
from edge.texttable import format_table  # noqa: E402
from exporters import PRECISIONS, export_model, get_backend, get_exporter  # noqa: E402
from exporters.decoding import make_wrapper  # noqa: E402


def median_ms(fn, runs: int, warmup: int) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``runs`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def time_runner(runner, prompt: np.ndarray, context: int, runs: int, warmup: int) -> tuple[float, float]:
    """(prefill ms, decode ms/token); decode walks positions T, T+1, ... after a prefill."""
    T = prompt.shape[1]
    prefill = median_ms(lambda: runner.prefill(prompt), max(5, runs // 4), 2)
    runner.prefill(prompt)
    pos = iter(range(10**9))

    def step():
        runner.decode(int(prompt[0, -1]), T + next(pos) % (context - T))
    return prefill, median_ms(step, runs, warmup)


@torch.no_grad()
def time_eager(dense, prompt: torch.Tensor, context: int, runs: int, warmup: int) -> dict:
    """Torch eager: the same static-cache wrapper, and the plain model forward without a cache."""
    w = make_wrapper(dense, context, "buffers", prompt.shape[1])
    T = prompt.shape[1]
    prefill = median_ms(lambda: w.prefill(prompt), max(5, runs // 4), 2)
    w.prefill(prompt)
    tok, pos = prompt[:, -1:], torch.tensor([T])
    decode = median_ms(lambda: w.decode(tok, pos), runs, warmup)
    seq = torch.cat([prompt, tok], dim=1)  # no cache: each new token re-runs the whole prefix
    nocache = median_ms(lambda: dense(seq), runs, warmup)
    return {"prefill": prefill, "decode": decode, "nocache": nocache}


def can_run(backend: str) -> bool:
    """Whether the backend's own runtime runs on this machine (Core ML: macOS only)."""
    return get_backend(backend).runs_here()


def bench_spec(model, spec_name, args, out_dir, eager_rows, rows) -> None:
    """Export and time every backend x precision for one uniform spec; append table rows."""
    spec = parse_spec(spec_name, model.config)
    dense = slice_model(model, spec)
    prompt = args.val[: args.prefill_len].view(1, -1)
    eager = time_eager(dense, prompt, args.context, args.runs, args.warmup)
    eager_rows.append([spec_name, args.prefill_len, eager["prefill"], eager["decode"], eager["nocache"]])
    print(f"  {spec_name} torch eager: prefill {eager['prefill']:.2f} ms, decode {eager['decode']:.3f} ms/token "
          f"(static cache), {eager['nocache']:.2f} ms/token without a cache", flush=True)
    fp32_size = {}
    for backend in args.backends:
        for precision in PRECISIONS[backend]:
            t = time.perf_counter()
            try:
                art = export_model(model, backend, precision, out_dir, spec=spec_name, context=args.context,
                                   prefill_len=args.prefill_len, name=f"{spec_name}-{backend}-{precision}",
                                   parity=False, tokenizer=args.tokenizer)
            except Exception as e:  # report and go on: one failure must not hide the other figures
                print(f"  {spec_name} {backend} {precision}: EXPORT FAILED: {type(e).__name__}: "
                      f"{str(e).splitlines()[0][:200]}", flush=True)
                continue
            export_s = time.perf_counter() - t
            size = art.meta["file_size"]
            # first precision of each backend is its float one; Core ML's is fp16, so an fp32
            # package would be twice its size (weights are nearly all of it)
            base = fp32_size.setdefault(backend, size * (2 if precision == "fp16" else 1))
            pre = dec = float("nan")
            if can_run(backend):
                runner = get_exporter(backend).load_runner(art.path, art.meta)
                pre, dec = time_runner(runner, prompt.numpy(), args.context, args.runs, args.warmup)
            rows.append([spec_name, backend, precision, size / 1e6, size / base, pre, dec,
                         eager["decode"] / dec if dec == dec else float("nan"), export_s])
            print(f"  {spec_name} {backend} {precision}: {size / 1e6:.2f} MB, prefill {pre:.2f} ms, "
                  f"decode {dec:.3f} ms/token (export {export_s:.0f} s)", flush=True)
    if args.llama_bench:
        llama_rows(dense, spec_name, args, out_dir, eager["decode"], rows)


def llama_rows(dense, spec_name, args, out_dir: Path, eager_decode: float, rows) -> None:
    """llama.cpp's llama-bench on the same weights (bench/llama_cpp_decode.py): F32 and Q8_0 GGUF
    files, ``--threads`` threads, 64 tokens after a context of the prompt's length."""
    from llama_cpp_decode import check_gguf, llama_bench, write_gguf

    base = None
    for qtype in ("F32", "Q8_0"):
        t = time.perf_counter()
        path = write_gguf(dense, out_dir / f"{spec_name}-llama.cpp-{qtype}.gguf", qtype)
        if qtype == "F32" and check_gguf(dense, path) > 1e-4:
            raise SystemExit(f"{path.name}: the GGUF file read back is not the same model")
        size = path.stat().st_size
        base = base or size
        dec = llama_bench(args.llama_bench, path, args.threads, args.prefill_len, 64, 5)
        rows.append([spec_name, "llama.cpp", qtype.lower(), size / 1e6, size / base, float("nan"), dec,
                     eager_decode / dec, time.perf_counter() - t])
        print(f"  {spec_name} llama.cpp {qtype}: {size / 1e6:.2f} MB, decode {dec:.3f} ms/token", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?", help="checkpoint folder (default: the default model)")
    p.add_argument("--preset", help="random weights of this preset instead of a checkpoint (e.g. small)")
    p.add_argument("--specs", default="S,XL", help="uniform granularities to export (default: S,XL)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of every runtime (default: 1)")
    p.add_argument("--backends", default=",".join(PRECISIONS), help="comma-separated backends")
    p.add_argument("--runs", type=int, default=20, help="timed runs per figure (median; default 20)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first (default 5)")
    p.add_argument("--prefill-len", type=int, default=64, help="prompt tokens T (default 64)")
    p.add_argument("--context", type=int, help="KV-cache length (default: the model's max_context)")
    p.add_argument("--out", help="keep the artifacts in this folder (default: a temporary one)")
    p.add_argument("--llama-bench", type=Path, help="llama.cpp's llama-bench: time the same weights there too "
                   "(F32 and Q8_0 GGUF; see bench/llama_cpp_decode.py)")
    args = p.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",")]
    torch.set_num_threads(args.threads)
    model, folder = _model(args)
    args.context = args.context or model.config.max_context
    # the checkpoint's own tokenizer travels with each artifact, and the prompt is its text
    args.tokenizer = None if args.preset else ckpt.load_tokenizer(folder)
    args.val = (load_corpus() if args.preset else ckpt.load_corpus_for(Path(folder))).val
    for backend in args.backends:  # backends with a shared threadpool (ExecuTorch) size it here
        if hasattr(module := get_exporter(backend), "set_threads"):
            module.set_threads(args.threads)
    print(f"model {folder}: {model.config.n_layers} layers, d_model {model.config.d_model}, d_ff {model.config.d_ff}; "
          f"context {args.context}, prefill {args.prefill_len} tokens, {args.threads} thread(s), "
          f"median of {args.runs} runs after {args.warmup} warm-up; {platform.processor() or platform.machine()}")
    eager_rows, rows = [], []
    with tempfile.TemporaryDirectory(prefix="export-matrix-") as tmp:
        out_dir = Path(args.out) if args.out else Path(tmp)
        for spec_name in args.specs.split(","):
            bench_spec(model, spec_name.strip(), args, out_dir, eager_rows, rows)
    print("\ntorch eager (same static KV cache wrapper; 'no cache' = plain forward over T+1 tokens)")
    print(format_table(["spec", "T", "prefill ms", "decode ms/token", "no-cache ms/token"], eager_rows))
    print("\nexported artifacts (x fp32: size / the backend's fp32 artifact; Core ML: / 2x its fp16 package; "
          "speedup = eager decode / decode)")
    print(format_table(["spec", "backend", "precision", "size MB", "x fp32", "prefill ms", "decode ms/token",
                        "speedup vs eager", "export s"], rows))
    print("\ndecode ms/token")
    print(format_table(*decode_table(rows)))
    _targets(rows)
    return 0


def _model(args):
    """(model, where it came from): a checkpoint, or random weights of ``--preset``."""
    if args.preset:
        from edge.config import MatFormerConfig
        from edge.model import MatFormerLM

        torch.manual_seed(0)
        return MatFormerLM(MatFormerConfig.from_preset(args.preset)).eval(), f"preset {args.preset} (random weights)"
    return load_any(args.checkpoint)


def decode_table(rows) -> tuple[list, list]:
    """(header, rows): decode ms/token per backend x precision, one column per spec, + XL/S."""
    specs = list(dict.fromkeys(r[0] for r in rows))
    cells: dict = {}
    for r in rows:
        cells.setdefault((r[1], r[2]), {})[r[0]] = r[6]
    out = []
    for (backend, precision), by_spec in cells.items():
        ratio = by_spec.get("XL", float("nan")) / by_spec.get("S", float("nan")) if "S" in by_spec else float("nan")
        out.append([backend, precision, *[by_spec.get(s, float("nan")) for s in specs], ratio])
    return ["backend", "precision", *specs, "XL/S"], out


def _targets(rows) -> None:
    """Print each target and whether the measured rows meet it."""
    int8 = [r for r in rows if r[2] == "int8"]
    ok_size = [r for r in int8 if r[4] <= 0.30]
    print(f"\ntarget int8 size <= 0.30x fp32: {len(ok_size)}/{len(int8)} met "
          f"(ratios {', '.join(f'{r[0]}/{r[1]} {r[4]:.2f}' for r in int8)})")
    timed = [r for r in rows if r[7] == r[7]]
    fast = [r for r in timed if r[7] >= 3.0]
    print(f"target decode >= 3x faster than eager: {len(fast)}/{len(timed)} met "
          f"(min {min((r[7] for r in timed), default=float('nan')):.2f}x, "
          f"max {max((r[7] for r in timed), default=float('nan')):.2f}x)")
    if any(r[1] != "llama.cpp" and not can_run(r[1]) for r in rows):
        print("Core ML: size only here; prediction needs macOS (timings n/a).")


if __name__ == "__main__":
    sys.exit(main())
