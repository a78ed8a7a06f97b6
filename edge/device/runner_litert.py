"""Standalone LiteRT benchmark runner: time each signature of a .tflite file.

    python runner_litert.py --model m.tflite [--methods prefill,decode] [--warmup 3] [--runs 20]
                            [--threads 1]

This file is copied to the device and run on its own: it imports only ``ai_edge_litert`` (and
numpy, which it needs), never torch or this project, so the process's peak memory (~40 MB
baseline) reflects the model rather than a training framework. Inputs are built from each
signature's own input details (shape, dtype): zeros, except LiteRT-LM's ``input_pos`` (the
prompt at positions 0..T-1, decode at position T) and ``mask`` (causal over those positions);
caches passed in and out as tensors are timed like any other input. ``--methods prefill``
names the artifact's prompt signature (LiteRT-LM's ``prefill_<T>``, the largest T) and is
reported under ``prefill``. Prints one JSON object, the same shape as the C++ runner's
(apps/cpp/runner.cpp).
"""

import argparse
import json
import resource
import sys
import time


def _percentile(values, q):
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


MASK_VALUE = -3.0e4  # additive mask of slots a query must not see (exporters/litert.py)


def _resolve(name, signatures):
    """The signature a method name stands for: itself, or for "prefill" the largest prefill_<T>."""
    if name in signatures:
        return name
    prompts = sorted((s for s in signatures if s.startswith("prefill_") and s[8:].isdigit()), key=lambda s: int(s[8:]))
    return prompts[-1] if name == "prefill" and prompts else None


def _inputs(details, decode_pos):
    """Zeros of each input's shape and dtype; LiteRT-LM's input_pos and mask made consistent."""
    import numpy as np

    inputs = {k: np.zeros(d["shape"], dtype=d["dtype"]) for k, d in details.items()}
    if "input_pos" in inputs and "mask" in inputs:
        T = inputs["input_pos"].shape[0]
        pos = np.arange(T) if T > 1 else np.array([decode_pos])
        inputs["input_pos"][:] = pos
        slots = np.arange(inputs["mask"].shape[-1])
        inputs["mask"][0, 0] = np.where(slots[None, :] <= pos[:, None], 0.0, MASK_VALUE)
    return inputs


def _time_signature(interpreter, name, warmup, runs, decode_pos=0):
    runner = interpreter.get_signature_runner(name)
    details = runner.get_input_details()
    inputs = _inputs(details, decode_pos)
    samples = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        runner(**inputs)
        ms = (time.perf_counter() - start) * 1000.0
        if i >= warmup:
            samples.append(ms)
    return {"signature": name, "inputs": len(details), "arena_bytes": None, "runs": len(samples),
            "median_ms": _percentile(samples, 0.5), "p90_ms": _percentile(samples, 0.9),
            "mean_ms": sum(samples) / len(samples), "min_ms": min(samples), "samples_ms": samples}


def _peak_rss_bytes():
    """Peak RSS since exec: VmHWM (ru_maxrss survives exec, so it would include a big parent)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KB on Linux


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--methods", default="")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        print("runner_litert: error: ai-edge-litert is not installed (pip install ai-edge-litert)", file=sys.stderr)
        return 2
    try:
        interpreter = Interpreter(model_path=args.model, num_threads=max(1, args.threads))
    except (ValueError, RuntimeError, OSError) as e:
        print(f"runner_litert: error: cannot load {args.model!r}: {e}", file=sys.stderr)
        return 2
    signatures = interpreter.get_signature_list()
    names = [m for m in args.methods.split(",") if m] or sorted(signatures)
    unknown = [m for m in names if _resolve(m, signatures) is None]
    if unknown:
        print(f"runner_litert: error: no signature {unknown} (has {sorted(signatures)})", file=sys.stderr)
        return 2
    prompt = _resolve("prefill", signatures)
    decode_pos = int(prompt[8:]) if prompt and prompt != "prefill" else 0  # the token after the prompt
    methods = {m: _time_signature(interpreter, _resolve(m, signatures), args.warmup, max(1, args.runs), decode_pos)
               for m in names}
    peak = _peak_rss_bytes()
    print(json.dumps({"runner": "runner_litert", "runtime": "litert", "threads": args.threads,
                      "warmup": args.warmup, "methods": methods, "peak_rss_bytes": peak}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
