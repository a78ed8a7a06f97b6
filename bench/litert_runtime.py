"""LiteRT decode of an exported ``.tflite``, three ways, beside ExecuTorch's ``.pte`` of the same spec.

For each ``.tflite`` given (written by ``matedge export --backend litert``), after a prompt of
--position tokens, decode ms/token (1 thread by default) through:

* ``interpreter``: the Interpreter API's signature runner on ``decode`` — every call copies the
  caches in and the updated caches out, and attention reads all C slots (the runner before);
* ``in place``: LiteRT's CompiledModel with each cache buffer bound as input and output of
  ``decode`` and an XNNPACK weight cache (exporters/litert_session.py), still all C slots;
* ``window``: the same session on the smallest ``decode_w<N>`` holding the position (what
  ``exporters.litert.LiteRTRunner`` and ``matedge run`` use now);

and, with --pte FILE per .tflite, ExecuTorch's runtime on that ``.pte`` (its Python runner,
llama custom ops). The ``.litertlm`` beside each file is also run through LiteRT-LM's Engine
(its own benchmark: ms per token over 64 decoded tokens after a short prompt; median of 3 runs
after the interleaved rounds), which uses ``decode`` over all C slots. Calls are interleaved in rounds on one position (the caches stay as the
prompt left them), so a shared machine's drift hits every column alike. Prints a table; also
the peak resident memory of each LiteRT way, measured in a child process of its own.

    python bench/litert_runtime.py A.tflite [B.tflite ...] [--pte A.pte,B.pte] [--position 64]
                                   [--rounds 7] [--calls 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.litert_decode import engine_decode_ms, time_all  # noqa: E402
from edge.texttable import format_table  # noqa: E402

WAYS = ("interpreter", "in place", "window")


def interpreter_step(path: Path, position: int, threads: int):
    """The former runner's call: signature runner on decode, caches copied in and out."""
    from ai_edge_litert.interpreter import Interpreter

    from exporters.litert_session import MASK_VALUE

    runner = Interpreter(model_path=str(path), num_threads=threads).get_signature_runner("decode")
    inputs = {k: np.zeros(d["shape"], d["dtype"]) for k, d in runner.get_input_details().items()}
    inputs["input_pos"][:] = position
    inputs["mask"][..., position + 1:] = MASK_VALUE

    def step():
        out = runner(**inputs)
        inputs.update({k: v for k, v in out.items() if k.startswith("kv_cache_")})
    return step


def session_step(path: Path, position: int, threads: int, windowed: bool):
    """The session's decode at ``position`` after a prompt (in place; a window when asked)."""
    from exporters.litert import LiteRTRunner

    runner = LiteRTRunner(path, threads=threads)
    if not windowed:
        runner.windows = []
    runner.forward(np.ones((1, position), np.int32), 0)
    return lambda: runner.decode(1, position)


def pte_step(path: Path, position: int, threads: int):
    from exporters.executorch import load_runner, set_threads

    set_threads(threads)
    meta = json.loads(path.with_suffix(".json").read_text())
    runner = load_runner(path, meta)
    runner.forward(np.ones((1, position), np.int64), 0)
    return lambda: runner.decode(1, position)


def make(way: str, path: Path, position: int, threads: int):
    if way == "interpreter":
        return interpreter_step(path, position, threads)
    return session_step(path, position, threads, windowed=way == "window")


def peak_rss_mb(way: str, path: Path, position: int, threads: int) -> float:
    """Peak RSS (MiB) of a child that loads the file one way and decodes 3 tokens."""
    # VmHWM, not ru_maxrss: Linux carries a forked child's maxrss across exec, so that one would
    # start at this (large) process's peak
    code = ("import sys; sys.path.insert(0, sys.argv[1]); sys.argv = sys.argv[1:]\n"
            "from bench.litert_runtime import make\n"
            "f = make(sys.argv[1], __import__('pathlib').Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))\n"
            "[f() for _ in range(3)]\n"
            "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))")
    r = subprocess.run([sys.executable, "-c", code, str(ROOT), way, str(path), str(position), str(threads)],
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        return float("nan")
    return int(r.stdout.split()[-1]) / 1024


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tflite", nargs="+", type=Path, help=".tflite files written by matedge export --backend litert")
    p.add_argument("--pte", default="", help="comma-separated .pte files, one per .tflite (same order)")
    p.add_argument("--position", type=int, default=64, help="decode position: tokens before it (default 64)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--calls", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory children")
    args = p.parse_args(argv)
    ptes = [Path(x) for x in args.pte.split(",") if x]
    if ptes and len(ptes) != len(args.tflite):
        p.error(f"--pte names {len(ptes)} files for {len(args.tflite)} .tflite files")
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    for i, path in enumerate(args.tflite):
        fns = {way: make(way, path, args.position, args.threads) for way in WAYS}
        if ptes:
            fns["pte"] = pte_step(ptes[i], args.position, args.threads)
        ms = {k: wall for k, (wall, *_) in time_all(fns, args.rounds, args.calls).items()}  # wall medians
        bundle = path.with_suffix(".litertlm")
        ms["engine"] = statistics.median(engine_decode_ms(bundle, threads=args.threads) for _ in range(3)) \
            if bundle.exists() else float("nan")
        mem = {w: float("nan") if args.no_memory else peak_rss_mb(w, path, args.position, args.threads) for w in WAYS}
        pte = ms.get("pte", float("nan"))
        rows.append([path.name, path.stat().st_size / 1e6, *(ms[w] for w in WAYS), ms["engine"], pte,
                     ms["window"] / pte,
                     *(mem[w] for w in WAYS)])
        print(f"  {path.name}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in ms.items()), flush=True)
    print(f"\ndecode ms/token at position {args.position}, {args.threads} thread(s), median of "
          f"{args.rounds} interleaved rounds x {args.calls} calls; peak RSS MiB of each LiteRT way alone")
    print(format_table(["file", "MB", "interpreter", "in place", "window", "Engine", ".pte", "window/.pte",
                        "RSS interp.", "RSS in place", "RSS window"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
