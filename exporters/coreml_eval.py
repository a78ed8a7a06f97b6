"""Graph-level evaluation of a saved Core ML package without Apple's runtime.

A saved ``.mlpackage`` is loaded back into a MIL program (coremltools' own proto loader) and
each function is evaluated op by op with coremltools' numpy value inference (``op.value_inference``,
the same code its constant-folding passes use). This checks the *graph* that was written (op
types, wiring, weights after compression, fp16 casts) — not Apple's fp16 / Neural Engine kernels.
A few ops get own numpy versions where coremltools' value inference is missing or breaks under
numpy 2 (see OVERRIDES).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def load_program(path: Path):
    """The MIL program of a saved .mlpackage (weights read from its weight files)."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load

    model = ct.models.MLModel(str(path), skip_model_load=True)
    spec = model.get_spec()
    weights_dir = str(Path(model.weights_dir))
    return load(spec, spec.specificationVersion, file_weights_dir=weights_dir)


def _x(op, name="x"):
    return np.asarray(getattr(op, name).val)


def _softmax(op):
    x = _x(op).astype(np.float32)
    e = np.exp(x - x.max(axis=op.axis.val, keepdims=True))
    return (e / e.sum(axis=op.axis.val, keepdims=True)).astype(_x(op).dtype)


def _silu(op):
    x = _x(op).astype(np.float32)
    return (x / (1.0 + np.exp(-x))).astype(_x(op).dtype)


def _reduce(fn):
    def run(op):
        axes = None if op.axes is None else tuple(int(a) for a in np.atleast_1d(op.axes.val))
        keep = bool(op.keep_dims.val) if op.keep_dims is not None else False
        return fn(_x(op), axis=axes, keepdims=keep).astype(_x(op).dtype)
    return run


def _rsqrt(op):
    x = _x(op).astype(np.float32)
    eps = float(op.epsilon.val) if getattr(op, "epsilon", None) is not None else 1e-12
    return (1.0 / np.sqrt(x + eps)).astype(_x(op).dtype)


def _shift_scale(op):
    # Dequantize int8 weights: scale * (data - offset), scales repeated over their blocks.
    return type(op).decompress(np.asarray(op.data.val), np.asarray(op.scale.val),
                               None if op.offset is None else np.asarray(op.offset.val))


def _lut(op):
    # 4-bit palettized weights: look each index up in its block's table.
    return type(op).decompress(np.asarray(op.indices.val), np.asarray(op.lut.val),
                               None if op.vector_axis is None else op.vector_axis.val)


OVERRIDES = {
    "constexpr_blockwise_shift_scale": _shift_scale,
    "constexpr_lut_to_dense": _lut,
    "softmax": _softmax,
    "silu": _silu,
    "reduce_mean": _reduce(np.mean),
    "reduce_sum": _reduce(np.sum),
    "reduce_max": _reduce(np.max),
    "rsqrt": _rsqrt,
}


def _bind(var, value) -> None:
    """Give ``var`` a concrete value so the ops consuming it can run their value inference."""
    holder = var.sym_type()
    holder.val = value
    var._sym_val = holder


def run_function(prog, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Evaluate function ``name`` of ``prog`` on ``inputs``; returns its outputs by name."""
    fn = prog.functions[name]
    for var_name, var in fn.inputs.items():
        _bind(var, np.asarray(inputs[var_name]).astype(_np_dtype(var)))
    for op in fn.operations:
        if op.op_type == "const":
            continue
        if op.op_type in OVERRIDES:
            vals = (OVERRIDES[op.op_type](op),)
        else:
            vals = op.value_inference()
            vals = vals if isinstance(vals, (tuple, list)) else (vals,)
        for var, val in zip(op.outputs, vals):
            if val is None:
                raise RuntimeError(f"no value inference for op {op.op_type!r} ({op.name})")
            _bind(var, np.asarray(val) if not np.isscalar(val) else val)
    return {v.name: np.asarray(v.val) for v in fn.outputs}


def _np_dtype(var):
    from coremltools.converters.mil.mil import types

    return types.nptype_from_builtin(var.dtype)


class MILRunner:
    """A Runner over the graph-level evaluator (prefill/decode functions, explicit fp16 cache)."""

    label = "coremltools MIL value inference (graph-level check, not Apple's kernels)"
    kind = "graph-level (coremltools MIL value inference; not Apple's kernels)"  # parity's "kind"

    def __init__(self, path: Path, meta: dict | None = None):
        self.prog = load_program(path)
        self.caches: dict[str, np.ndarray] = {}

    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        out = run_function(self.prog, "prefill", {"tokens": np.asarray(tokens, dtype=np.int32)})
        self.caches = {"k_cache": out["k_cache_out"], "v_cache": out["v_cache_out"]}
        return out["logits"].astype(np.float32)

    def decode(self, token: int, position: int) -> np.ndarray:
        out = run_function(self.prog, "decode", {"token": np.array([[token]], dtype=np.int32),
                                                 "position": np.array([position], dtype=np.int32),
                                                 **self.caches})
        self.caches = {"k_cache": out["k_cache_out"], "v_cache": out["v_cache_out"]}
        return out["logits"].astype(np.float32)
