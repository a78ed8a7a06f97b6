"""ExecuTorch: one ``.pte`` with methods ``prefill`` and ``decode``, delegated to XNNPACK.

KV cache: mutable buffers, shared by both methods (``share_mutable_buffers``) and updated in
place, so a runner passes only the token(s) and the position. Precisions:

* ``fp32``  : float weights and activations.
* ``int8``  : dynamic int8 activations, int8 per-channel (PerAxis(0)) weights (torchao).
* ``8da4w`` : dynamic int8 activations, int4 weights in groups of 32 (torchao).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from exporters.backends import BACKENDS
from exporters.base import ExportError, library_versions, require
from exporters.decoding import entry_modules, entry_points, example_inputs, make_wrapper

BACKEND = BACKENDS["executorch"]  # the registry record: the one place its names and precisions live
PRECISIONS = BACKEND.precisions
SUFFIX = BACKEND.suffix
EXTRA = BACKEND.extra
CACHE = "buffers"
GROUP_SIZE = 32  # int4 weight group along the input dimension


def _quantize(wrapper, precision: str) -> None:
    """Replace the wrapper's nn.Linear weights in place with torchao quantized tensors.

    The tied embedding/LM head is not an nn.Linear here (``F.linear`` on the embedding table) and
    stays fp32: the embedding lookup needs float rows, and one shared table is stored once."""
    if precision == "fp32":
        return
    import torch

    require("torchao", EXTRA, "ExecuTorch quantization")
    from torchao.quantization import quantize_
    from torchao.quantization.granularity import PerAxis, PerGroup
    from torchao.quantization.quant_api import Int8DynamicActivationIntxWeightConfig

    if precision == "int8":
        cfg = Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int8, weight_granularity=PerAxis(0))
    else:
        cfg = Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(GROUP_SIZE))
    quantize_(wrapper, cfg)


def check(model, precision: str) -> None:
    """Reject combinations this backend cannot write, before any work."""
    if precision == "8da4w":
        bad = sorted({m for m in model.config.layer_ffn_sizes() if m % GROUP_SIZE}
                     | ({model.config.d_model} if model.config.d_model % GROUP_SIZE else set()))
        if bad:
            raise ExportError(f"precision 8da4w groups weights by {GROUP_SIZE} input features; "
                              f"widths {bad} are not multiples of {GROUP_SIZE} (use int8 or fp32)")


def export(model, precision: str, out_path: Path, *, context: int, prefill_len: int,
           cache: str = CACHE) -> dict:
    """Write ``out_path`` (.pte) for a dense model; return metadata (entry points, cache, ...).

    ``cache="io"`` (explicit cache inputs/outputs) exists to measure the alternative."""
    import torch

    require("executorch.exir", EXTRA, "the ExecuTorch exporter")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower
    from executorch.exir.passes import MemoryPlanningPass

    check(model, precision)
    wrapper = make_wrapper(model, context, cache, prefill_len)
    _quantize(wrapper, precision)
    args = example_inputs(wrapper, prefill_len)
    modules = entry_modules(wrapper)
    with torch.no_grad():
        programs = {name: torch.export.export(modules[name], a, strict=False) for name, a in args.items()}
    edge = to_edge_transform_and_lower(programs, partitioner=[XnnpackPartitioner()])
    # One cache for both methods: prefill fills it, decode continues it.
    config = ExecutorchBackendConfig(memory_planning_pass=MemoryPlanningPass(share_mutable_buffers=True),
                                     emit_mutable_buffer_names=True)
    program = edge.to_executorch(config)
    Path(out_path).write_bytes(program.buffer)
    return {"entry_points": entry_points(wrapper, prefill_len, "int64"), "cache": cache,
            "delegate": "XnnpackBackend", "libraries": library_versions("executorch", "torchao"),
            "quantization": _describe(precision)}


def _describe(precision: str) -> str:
    return {"fp32": "none",
            "int8": "torchao Int8DynamicActivationIntxWeightConfig(int8, PerAxis(0)) on every nn.Linear",
            "8da4w": f"torchao Int8DynamicActivationIntxWeightConfig(int4, PerGroup({GROUP_SIZE})) on every nn.Linear",
            }[precision]


class ExecuTorchRunner:
    """Runs a .pte with ``executorch.runtime``; the cache lives inside the program."""

    label = "executorch.runtime (XNNPACK delegate)"

    def __init__(self, path: Path, meta: dict | None = None):
        require("executorch.runtime", EXTRA, "running a .pte")
        from executorch.runtime import Runtime

        self.program = Runtime.get().load_program(Path(path))
        self.prefill_m = self.program.load_method("prefill")
        self.decode_m = self.program.load_method("decode")
        self.io = (meta or {}).get("cache") == "io"  # explicit caches: keep them between calls
        self.caches: list = []

    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        import torch

        out = self.prefill_m.execute([torch.as_tensor(np.asarray(tokens, dtype=np.int64))])
        self.caches = list(out[1:])
        return out[0].numpy()

    def decode(self, token: int, position: int) -> np.ndarray:
        import torch

        out = self.decode_m.execute([torch.tensor([[token]], dtype=torch.int64),
                                     torch.tensor([position], dtype=torch.int64)] + self.caches)
        if self.io:
            self.caches = list(out[1:])
        return out[0].numpy()


def load_runner(path: Path, meta: dict | None = None) -> ExecuTorchRunner:
    """A runner on the real ExecuTorch runtime."""
    return ExecuTorchRunner(path, meta)


def set_threads(n: int) -> None:
    """Size ExecuTorch's shared CPU threadpool (XNNPACK uses it)."""
    from executorch.extension.pybindings import portable_lib

    portable_lib._unsafe_reset_threadpool(n)
