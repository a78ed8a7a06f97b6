"""Standalone LiteRT benchmark runner: time each signature of a .tflite file.

    python runner_litert.py --model m.tflite [--methods prefill,decode] [--warmup 3] [--runs 20]
                            [--threads 1] [--meta m.json | --no-verify]

This file is copied to the device and run on its own: it imports only ``ai_edge_litert`` (and
numpy, which it needs), never torch or this project, so the process's peak memory (~40 MB
baseline) reflects the model rather than a training framework. Inputs are built from each
signature's own input details (shape, dtype): zeros, except LiteRT-LM's ``input_pos`` (the
prompt at positions 0..T-1, decode at position T) and ``mask`` (causal over those positions).
It runs LiteRT's ``CompiledModel`` as LiteRT-LM's engine does: an output named like an input
(the ``kv_cache_*`` caches) is bound to the same buffer, so caches are updated in place rather
than copied in and out, and XNNPACK's packed weights go to a weight-cache file in a temporary
folder (removed at exit) that all signatures share. ``--methods prefill`` names the artifact's
prompt signature (LiteRT-LM's ``prefill_<T>``, the largest T) and ``decode`` the decode a
generating runner uses after that prompt (the smallest ``decode_w<N>`` window holding it, if the
file has windows); both are reported under the name asked for, with the signature timed. Prints
one JSON object, the same shape as the C++ runner's (apps/cpp/runner.cpp).

Like the C++ runner, it checks the artifact's size and sha256 against its metadata JSON before
loading it (``--meta``, default: the model's path with ``.json``), range-checks its numbers, and
reports every failure, the runtime's included, as one line with exit code 2.
"""

import argparse
import hashlib
import json
import os
import resource
import signal
import stat
import sys
import tempfile
import time

LIMITS = {"warmup": (0, 10_000), "runs": (1, 100_000), "threads": (1, 256)}


class RunnerError(Exception):
    """A one-line reason to stop (exit 2)."""


def _bounded(name):
    # A copy of edge.inputs.int_arg on purpose: this file runs alone on the device (see above).
    lo, hi = LIMITS[name]

    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{name} {text[:40]!r} is not an integer") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"--{name} {v} is out of range (allowed: {lo}..{hi})")
        return v

    return parse


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(model, meta_path, required=True):
    """Refuse a model whose size or sha256 differ from its metadata JSON (or that has none)."""
    try:
        st = os.stat(model)
    except OSError as e:
        raise RunnerError(f"cannot open {model!r}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise RunnerError(f"{model!r} is not a regular file")
    if not required:
        return
    explicit = meta_path is not None
    meta_path = meta_path or os.path.splitext(model)[0] + ".json"
    if not explicit and not os.path.isfile(meta_path):
        raise RunnerError(f"no metadata {meta_path!r} beside the model to verify it against "
                          f"(pass --meta FILE, or --no-verify for a model not written by matedge)")
    try:
        if not stat.S_ISREG(os.stat(meta_path).st_mode) or os.stat(meta_path).st_size > 16 << 20:
            raise RunnerError(f"metadata {meta_path!r} is not a small regular file")
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError, RecursionError) as e:
        raise RunnerError(f"cannot read metadata {meta_path!r} ({type(e).__name__})") from None
    size, digest = (meta.get("file_size"), meta.get("sha256")) if isinstance(meta, dict) else (None, None)
    if not isinstance(size, int) or not isinstance(digest, str):
        raise RunnerError(f"metadata {meta_path!r} has no file_size and sha256")
    if size != st.st_size or _sha256(model) != digest:
        raise RunnerError(f"{model!r} does not match the size and sha256 in {meta_path!r}: refusing a damaged "
                          f"or substituted file")


def _percentile(values, q):
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


MASK_VALUE = -3.0e4  # additive mask of slots a query must not see (exporters/litert.py)


def _resolve(name, signatures, decode_pos=0):
    """The signature a method name stands for: itself; for "prefill" the largest prefill_<T>; for
    "decode" the smallest decode_w<N> whose attention window holds decode_pos, as a generating
    runner picks it (exporters/litert.py), else decode itself; an elastic member's "decode_<m>"
    likewise among its decode_<m>_w<N>."""
    prefix = "decode_w" if name == "decode" else f"{name}_w"
    if name.startswith("decode"):
        windows = sorted(int(s[len(prefix):]) for s in signatures
                         if s.startswith(prefix) and s[len(prefix):].isdigit())
        window = next((w for w in windows if decode_pos < w), None)
        if window is not None:
            return f"{prefix}{window}"
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


def _bind(model, name, decode_pos, shared):
    """Input and output buffers of one signature: an output named like an input (LiteRT-LM's
    kv_cache_*) is bound to that input's buffer, so the runtime updates it in place as LiteRT-LM
    does, and buffers of the same name are shared by all signatures (one KV cache)."""
    details = model.get_input_tensor_details(name)
    values = _inputs({k: {"shape": d["shape"], "dtype": d["dtype"]} for k, d in details.items()}, decode_pos)
    ins = {}
    for k, v in values.items():
        if k.startswith("kv_cache_"):
            if k not in shared:
                shared[k] = model.create_input_buffer_by_name(name, k)
                shared[k].write(v)
            ins[k] = shared[k]
        else:
            ins[k] = model.create_input_buffer_by_name(name, k)
            ins[k].write(v)
    outs = {k: ins[k] if k in ins else model.create_output_buffer_by_name(name, k)
            for k in model.get_output_tensor_details(name)}
    return ins, outs


def _time_signature(model, name, warmup, runs, decode_pos=0, shared=None):
    ins, outs = _bind(model, name, decode_pos, {} if shared is None else shared)
    samples = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        model.run_by_name(name, ins, outs)
        ms = (time.perf_counter() - start) * 1000.0
        if i >= warmup:
            samples.append(ms)
    return {"signature": name, "inputs": len(ins), "arena_bytes": None, "runs": len(samples),
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


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"runner_litert: error: {message}\n")


def _load(path, threads, cache_dir):
    """A CompiledModel on XNNPACK whose packed weights go to a weight-cache file in cache_dir,
    shared by all signatures (without it each signature packs its own copy)."""
    try:
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.cpu_options import CpuOptions
        from ai_edge_litert.options import Options
    except ImportError:
        raise RunnerError("ai-edge-litert is not installed (pip install ai-edge-litert)") from None
    cpu = CpuOptions(num_threads=threads, xnnpack_weight_cache_path=os.path.join(cache_dir, "weights.xnnpack_cache"))
    try:
        _check_structure(path)
        return CompiledModel.from_file(path, options=Options(cpu_options=cpu))
    except Exception as e:  # the runtime raises ValueError/RuntimeError/... for a bad file
        raise RunnerError(f"cannot load {path!r}: {_line(e)}") from None


def _check_structure(path):
    """Let the Interpreter API verify the file first: it checks the flatbuffer and every
    signature's tensors and raises on a malformed file, where CompiledModel may crash on one
    (a file rewritten together with its metadata passes the checksum). No delegate: nothing is
    packed: a parse, 0.1 s and < 150 MB transient for a 650 MB file."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_path=path, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    for name in interp.get_signature_list():
        runner = interp.get_signature_runner(name)
        runner._interpreter_wrapper.AllocateTensors(runner._subgraph_index)


def _run(args):
    verify(args.model, args.meta, required=not args.no_verify)
    with tempfile.TemporaryDirectory(prefix="runner-litert-") as cache_dir:
        model = _load(args.model, args.threads, cache_dir)
        try:
            return _time_all(model, args)
        finally:
            del model  # release the weight cache's mapping before its folder goes


def _time_all(model, args):
    signatures = model.get_signature_list()
    names = [m for m in args.methods.split(",") if m] or sorted(signatures)
    prompt = _resolve("prefill", signatures)
    decode_pos = int(prompt[8:]) if prompt and prompt != "prefill" else 0  # the token after the prompt
    unknown = [m for m in names if _resolve(m, signatures, decode_pos) is None]
    if unknown:
        raise RunnerError(f"no signature {unknown} (has {sorted(signatures)})")
    methods, shared = {}, {}
    for m in names:
        try:
            methods[m] = _time_signature(model, _resolve(m, signatures, decode_pos), args.warmup, args.runs,
                                         decode_pos, shared)
        except Exception as e:  # allocation or invocation failed inside the runtime
            raise RunnerError(f"signature {m!r} failed: {_line(e)}") from None
    return methods


def _line(e):
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}"


def main(argv=None):
    p = _Parser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--methods", default="")
    p.add_argument("--warmup", type=_bounded("warmup"), default=3)
    p.add_argument("--runs", type=_bounded("runs"), default=20)
    p.add_argument("--threads", type=_bounded("threads"), default=1)
    p.add_argument("--meta", help="metadata JSON with file_size and sha256 (default: beside the model)")
    p.add_argument("--no-verify", action="store_true", help="run a model that has no metadata")
    args = p.parse_args(argv)
    # a stopped profile ends like an interrupted one: the weight-cache folder is removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        methods = _run(args)
    except RunnerError as e:
        print(f"runner_litert: error: {e}", file=sys.stderr)
        return 2
    except MemoryError:
        print("runner_litert: error: out of memory", file=sys.stderr)
        return 2
    peak = _peak_rss_bytes()
    print(json.dumps({"runner": "runner_litert", "runtime": "litert", "threads": args.threads,
                      "warmup": args.warmup, "methods": methods, "peak_rss_bytes": peak}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
