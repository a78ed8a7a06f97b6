"""Core ML: one ``.mlpackage`` (ML program, iOS 18) with functions ``prefill`` and ``decode``.

Each entry point is converted on its own, compressed, then merged with
``ct.utils.save_multifunction`` (identical weights are stored once; compressing a merged
package is refused, so compression comes first). Precisions:

* ``fp16`` : fp16 weights and compute (Core ML's default for ML programs), except each RMSNorm's
  statistic (x², its mean, rsqrt), which overflows fp16 on a real model's residual stream.
* ``int8`` : linear weights quantized to int8, per channel (``cto.linear_quantize_weights``).
* ``pal4`` : linear weights palettized to 4 bits, k-means LUT per tensor (``cto.palettize_weights``).

KV cache: explicit fp16 inputs/outputs (``k_cache``/``v_cache`` in, ``k_cache_out``/``v_cache_out``
out). Stateful models (``ct.StateType``) were tried first: coremltools 9.0 fails converting the
prefill's in-place cache write from ``torch.export`` (``canonicalize_inplace_pattern``) and the
traced path, so the cache is explicit (and there is no Core ML runtime off macOS to compare).
Prediction needs macOS; elsewhere ``load_runner`` returns the graph-level evaluator.
"""

from __future__ import annotations

import platform
import tempfile
from pathlib import Path

import numpy as np

from exporters.backends import BACKENDS
from exporters.base import library_versions, require, tensor_spec
from exporters.decoding import entry_modules, entry_points, example_inputs, make_wrapper

BACKEND = BACKENDS["coreml"]  # the registry record: the one place its names and precisions live
PRECISIONS = BACKEND.precisions
SUFFIX = BACKEND.suffix
EXTRA = BACKEND.extra
CACHE = "io"
OUTPUTS = {"prefill": ["logits", "k_cache_out", "v_cache_out"], "decode": ["logits", "k_cache_out", "v_cache_out"]}
INPUTS = {"prefill": ["tokens"], "decode": ["token", "position", "k_cache", "v_cache"]}
WEIGHT_THRESHOLD = 512  # compress every linear weight with at least this many elements


def check(model, precision: str) -> None:
    """Nothing model-specific to reject: every dense spec converts."""


def _convert(ct, module, args, name: str):
    """One entry point -> an in-memory single-function ML program (fp16 compute but for the norms'
    statistic, see ``_fp16_op``)."""
    import torch

    with torch.no_grad():
        ep = torch.export.export(module, args, strict=False).run_decompositions({})
    inputs = [ct.TensorType(name=n, shape=a.shape, dtype=np.int32 if a.dtype == torch.int32 else np.float16)
              for n, a in zip(INPUTS[name], args)]
    return ct.convert(ep, inputs=inputs, outputs=[ct.TensorType(name=n) for n in OUTPUTS[name]],
                      minimum_deployment_target=ct.target.iOS18, convert_to="mlprogram",
                      compute_precision=ct.transform.FP16ComputePrecision(op_selector=_fp16_op))


# The ops of an RMSNorm's statistic as the converter hands them to the fp16 pass: the square is
# mul(x, x), the mean (+ eps) is already fused into a linear, then rsqrt.
_STATISTIC_OPS = {"mul", "linear", "add", "reduce_mean", "reduce_sum", "real_div", "rsqrt"}


def _fp16_op(op) -> bool:
    """Compute ``op`` in fp16, except an RMSNorm's statistic (the square, its mean, the rsqrt).

    A real model's residual stream reaches thousands (SmolLM2-135M has FFN units near 3,000), and
    x² overflows fp16 (max 65,504): every logit came out wrong (greedy agreement 0 against eager
    PyTorch). Those three ops run in fp32; the normalised product and everything else stay fp16."""
    return not _feeds_rsqrt(op, hops=3)


def _feeds_rsqrt(op, hops: int) -> bool:
    """``op`` is an rsqrt, or reaches one within ``hops`` ops of the statistic's kinds (a mul only
    as a square: the normalising mul(x, rsqrt) after it stays fp16)."""
    if op.op_type == "rsqrt":
        return True
    if hops == 0 or op.op_type not in _STATISTIC_OPS:
        return False
    if op.op_type == "mul" and op.inputs.get("x") is not op.inputs.get("y"):
        return False
    return any(_feeds_rsqrt(child, hops - 1) for out in op.outputs for child in out.child_ops)


def _compress(mlmodel, precision: str):
    """Compress the linear layers' weights of one function (fp16 is left as converted)."""
    import coremltools.optimize.coreml as cto

    if precision == "fp16":
        return mlmodel
    if precision == "int8":
        op = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                         weight_threshold=WEIGHT_THRESHOLD)
        return cto.linear_quantize_weights(mlmodel, _weights_only(mlmodel, op, cto))
    op = cto.OpPalettizerConfig(nbits=4, mode="kmeans", granularity="per_tensor", weight_threshold=WEIGHT_THRESHOLD)
    return cto.palettize_weights(mlmodel, _weights_only(mlmodel, op, cto))


def _weights_only(mlmodel, op_config, cto):
    """Configure the ops that read a linear layer's constants (weights, biases), and only those.

    A constant read by two ops must get one config: the tied embedding is read by a gather, and
    the converter dedupes small constants (a zero bias can also be the decode mask's zeros).
    Everything else (RoPE tables, masks) stays fp16; constants under the threshold are skipped.
    """
    fn = mlmodel._mil_program.functions["main"]
    linear_consts = {id(v) for op in fn.operations if op.op_type == "linear"
                     for v in op.get_flattened_inputs() if v.op is not None and v.op.op_type == "const"}
    names = {op.name: op_config for op in fn.operations
             if op.op_type != "const" and any(id(v) in linear_consts for v in op.get_flattened_inputs())}
    return cto.OptimizationConfig(op_name_configs=names)


def export(model, precision: str, out_path: Path, *, context: int, prefill_len: int, tokenizer=None) -> dict:
    """Write ``out_path`` (.mlpackage) for a dense model; return metadata (entry points, cache, ...).

    The package itself holds no tokenizer (Core ML has no place for one): export_model writes
    ``tokenizer.json`` + ``tokenizer_config.json`` beside it for the app to read.
    """
    import torch

    ct = require("coremltools", EXTRA, "the Core ML exporter")
    require("coremltools.optimize.coreml", EXTRA, "Core ML compression")
    wrapper = make_wrapper(model, context, CACHE, prefill_len)
    args = example_inputs(wrapper, prefill_len, torch.int32)  # Core ML inputs are int32, not int64
    modules = entry_modules(wrapper)
    with tempfile.TemporaryDirectory(dir=Path(out_path).parent, prefix=".coreml-parts-") as tmp:
        desc = ct.utils.MultiFunctionDescriptor()
        for name in ("prefill", "decode"):
            part = Path(tmp) / f"{name}.mlpackage"
            _compress(_convert(ct, modules[name], args[name], name), precision).save(str(part))
            desc.add_function(str(part), src_function_name="main", target_function_name=name)
        desc.default_function_name = "prefill"
        ct.utils.save_multifunction(desc, str(out_path))
    return {"entry_points": _entry_points(wrapper, prefill_len), "cache": CACHE,
            "deployment_target": "iOS18 / macOS15", "compute_precision": "fp16",
            "libraries": library_versions("coremltools"), "quantization": _describe(precision),
            "structure": structure(out_path)}


def _entry_points(wrapper, prefill_len: int) -> dict:
    """Signatures as written: int32 tokens, fp16 caches and logits, distinct output cache names."""
    eps = entry_points(wrapper, prefill_len, "int32")
    for name, ep in eps.items():
        for t in ep["inputs"]:
            if t["dtype"] == "float32":
                t["dtype"] = "float16"
        ep["outputs"] = [tensor_spec(n, t["shape"], "float16") for n, t in zip(OUTPUTS[name], ep["outputs"])]
    return eps


def _describe(precision: str) -> str:
    return {"fp16": "none (fp16 weights)",
            "int8": "cto.linear_quantize_weights int8 linear_symmetric per_channel (linear ops)",
            "pal4": "cto.palettize_weights 4-bit kmeans per_tensor LUT (linear ops)"}[precision]


def structure(path: Path) -> dict:
    """What the saved package holds: functions with their inputs/outputs, op counts, weight bytes."""
    import collections

    import coremltools as ct

    from exporters.base import file_size
    from exporters.coreml_eval import load_program

    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    functions = {}
    for f in spec.description.functions:
        functions[f.name] = {
            "inputs": [_feature(x) for x in f.input], "outputs": [_feature(x) for x in f.output],
            "states": [x.name for x in f.state]}
    prog = load_program(path)
    ops = {name: dict(collections.Counter(op.op_type for op in fn.operations))
           for name, fn in prog.functions.items()}
    weights = Path(path) / "Data" / "com.apple.CoreML" / "weights"
    return {"spec_version": spec.specificationVersion, "default_function": spec.description.defaultFunctionName,
            "functions": functions, "op_types": ops,
            "weight_bytes": file_size(weights) if weights.exists() else 0}


def _feature(x) -> dict:
    arr = x.type.multiArrayType
    names = {65568: "float32", 65552: "float16", 131104: "int32"}
    return {"name": x.name, "shape": [int(s) for s in arr.shape], "dtype": names.get(arr.dataType, str(arr.dataType))}


class CoreMLRunner:
    """Apple's runtime (macOS only): ``MLModel(..., function_name=...)``, fp16 caches kept here."""

    label = "Core ML runtime (macOS)"

    def __init__(self, path: Path, meta: dict | None = None):
        import coremltools as ct

        self.fns = {n: ct.models.MLModel(str(path), function_name=n) for n in ("prefill", "decode")}
        self.caches: dict[str, np.ndarray] = {}

    def _run(self, name: str, feeds: dict) -> np.ndarray:
        out = self.fns[name].predict({**feeds, **self.caches})
        self.caches = {"k_cache": out["k_cache_out"], "v_cache": out["v_cache_out"]}
        return np.asarray(out["logits"], dtype=np.float32)

    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        self.caches = {}
        return self._run("prefill", {"tokens": np.asarray(tokens, dtype=np.int32)})

    def decode(self, token: int, position: int) -> np.ndarray:
        return self._run("decode", {"token": np.array([[token]], dtype=np.int32),
                                    "position": np.array([position], dtype=np.int32)})


def load_runner(path: Path, meta: dict | None = None):
    """Apple's runtime on macOS; elsewhere the graph-level evaluator (labelled as such)."""
    require("coremltools", EXTRA, "running a .mlpackage")
    if platform.system() == "Darwin":
        return CoreMLRunner(path, meta)
    from exporters.coreml_eval import MILRunner

    return MILRunner(path, meta)
