"""LiteRT decode speed: the project's graphs side by side with litert-torch's generative layers.

For uniform specs of the default model (or CHECKPOINT; without one a random model of the `small`
preset: timing does not depend on the weights), at fp32 and int8, this converts

* ``io-cache``: the previous exporter's graph (exporters.decoding.IOCacheLM: one stacked
  (L, Hkv, C, hd) cache in and out, the new slot blended in with where + cat);
* ``litert-lm``: the current exporter's graph (exporters/litert_lm.py: LiteRT-LM's signatures,
  per-layer caches updated with DYNAMIC_UPDATE_SLICE, attention with bmm_4d on a transposed V),
  timed on ``decode`` (all C slots, as LiteRT-LM's Engine runs it) and on the attention window
  the project's runners use at that position (``decode_w<N>``);
* ``generative``: the same dims built from litert-torch's own generative layers
  (``DecoderOnlyModel``, transposed KV layout, mask as input) — what litert-torch's LLM
  examples export (its utilities import a tensorflow schema module that is not installed; a
  shim maps it to ai_edge_litert's copy of the same generated code, for this bench only);

and times ``decode`` in ``ai_edge_litert`` with 1 thread: inputs set once, then Invoke in
interleaved rounds (median and 10th percentile of wall time, and of this thread's CPU time,
which a busy shared machine inflates less). ExecuTorch's ``.pte`` at the same precision is
timed beside them (its runner's decode) for the "within 1.5x of ExecuTorch" goal, and the
``.litertlm`` through LiteRT-LM's own Engine (its benchmark's decode tokens/s).

    python bench/litert_decode.py [CHECKPOINT] [--specs S,XL] [--precisions fp32,int8] [--work DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.litert_graphs import convert_generative, convert_io_cache, convert_litert_lm  # noqa: E402

CONTEXT, PREFILL = 256, 8


def invoker(path: Path, signature: str = "decode", position: int = 70):
    """Invoke of one signature with inputs set once (the caches stay zeros; position mid-cache)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    runner = interp.get_signature_runner(signature)
    inputs = {k: np.zeros(d["shape"], d["dtype"]) for k, d in runner.get_input_details().items()}
    for name in ("args_1", "input_pos"):  # the old graph's position / LiteRT-LM's input_pos
        if name in inputs:
            inputs[name][:] = position
    if "mask" in inputs:
        inputs["mask"][..., position + 1:] = -3.0e4
    runner(**inputs)
    wrapper, index = runner._interpreter_wrapper, runner._subgraph_index
    return lambda: wrapper.Invoke(index)


def executorch_decoder(model, precision: str, work: Path):
    """decode() of the project's .pte at this precision (export_model, no parity)."""
    import json

    from exporters import export_model, get_exporter

    pte, meta = work / f"et-{precision}.pte", work / f"et-{precision}.json"
    if pte.exists() and meta.exists():  # an earlier run's export (--work)
        path, info = pte, json.loads(meta.read_text())
    else:
        art = export_model(model, "executorch", precision, work, context=CONTEXT, prefill_len=PREFILL,
                           name=f"et-{precision}", parity=False)
        path, info = art.path, art.meta
    runner = get_exporter("executorch").load_runner(path, info)
    runner.prefill(np.zeros((1, PREFILL), dtype=np.int64))
    return lambda: runner.decode(1, 70)


def engine_decode_ms(bundle: Path, tokens: int = 64, threads: int = 1) -> float:
    """LiteRT-LM Engine's own benchmark: ms per decoded token (after a short prompt)."""
    import litert_lm

    with tempfile.TemporaryDirectory() as cache:
        engine = litert_lm.Engine(str(bundle), backend=litert_lm.Backend.CPU(thread_count=threads), cache_dir=cache,
                                  enable_benchmark=True)
        sess = engine.create_session(sampler_config=litert_lm.SamplerConfig(top_k=1), max_output_tokens=tokens)
        sess.run_prefill(["The quick brown fox"])
        sess.run_decode()
        info = sess.get_benchmark_info()
        sess.close()
        engine.close()
    return 1e3 / info.last_decode_tokens_per_second


def time_all(fns: dict, rounds: int, calls: int) -> dict:
    """Interleaved timing: per name, (wall median, wall p10, cpu median, cpu p10) in ms."""
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for f in fns.values():
        f()
    for _ in range(rounds):
        for k, f in fns.items():
            for _ in range(calls):
                t, c = time.perf_counter(), time.thread_time()
                f()
                cpu[k].append((time.thread_time() - c) * 1e3)
                wall[k].append((time.perf_counter() - t) * 1e3)
    return {k: (statistics.median(wall[k]), float(np.percentile(wall[k], 10)),
                statistics.median(cpu[k]), float(np.percentile(cpu[k], 10))) for k in fns}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?", help="checkpoint folder (default: a random `small` model)")
    p.add_argument("--specs", default="S,XL")
    p.add_argument("--precisions", default="fp32,int8")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--calls", type=int, default=30)
    p.add_argument("--work", help="keep (and reuse) converted files here (default: a temporary folder)")
    p.add_argument("--graphs", default="io-cache,litert-lm,generative", help="which LiteRT graphs to time")
    p.add_argument("--no-executorch", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from edge.config import MatFormerConfig
    from edge.model import MatFormerLM
    from edge.slicing import slice_model
    from edge.texttable import format_table

    if args.checkpoint:
        from edge.checkpoint import load_any

        model = load_any(args.checkpoint)[0]
    else:
        torch.manual_seed(0)
        model = MatFormerLM(MatFormerConfig.from_preset("small")).eval()
    cfg = model.config
    print(f"{cfg.n_layers} layers, d_model {cfg.d_model}, heads {cfg.n_heads}/{cfg.n_kv_heads}, d_ff {cfg.d_ff}, "
          f"context {CONTEXT}; decode ms/token, 1 thread, {args.rounds} interleaved rounds x {args.calls} calls")
    rows = []
    with tempfile.TemporaryDirectory(prefix="litert-decode-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for spec in args.specs.split(","):
            dense = slice_model(model, (spec,) * cfg.n_layers)
            for precision in args.precisions.split(","):
                tag = f"{spec}-{precision}"
                graphs = {"io-cache": ("io-cache (before)", convert_io_cache, "io"),
                          "litert-lm": ("litert-lm (now)", convert_litert_lm, "lm"),
                          "generative": ("generative", convert_generative, "gen")}
                fns = {}
                for g in args.graphs.split(","):
                    label, convert, prefix = graphs[g]
                    path = convert(dense, precision, work / f"{prefix}-{tag}.tflite", CONTEXT, PREFILL)
                    fns[label] = invoker(path)
                    if g == "litert-lm":  # the attention window a runner decodes position 70 with
                        from exporters.litert import decode_windows

                        W = next((w for w in decode_windows(CONTEXT) if 70 < w), None)
                        if W:
                            fns[f"litert-lm decode_w{W}"] = invoker(path, f"decode_w{W}")
                if not args.no_executorch:
                    fns["executorch .pte"] = executorch_decoder(dense, precision, work / f"et-{tag}")
                res = time_all(fns, args.rounds, args.calls)
                bundle = work / f"lm-{tag}.litertlm"
                engine = engine_decode_ms(bundle) if bundle.exists() else float("nan")
                for k, (wm, wp, cm, cp) in res.items():
                    rows.append([spec, precision, k, wm, wp, cm, cp, engine if k.startswith("litert-lm") else float("nan")])
                    print(f"  {spec} {precision} {k}: wall {wm:.3f} (p10 {wp:.3f}), cpu {cm:.3f} (p10 {cp:.3f}) ms",
                          flush=True)
    print(format_table(["spec", "precision", "graph", "wall ms", "wall p10", "cpu ms", "cpu p10", "Engine ms"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
