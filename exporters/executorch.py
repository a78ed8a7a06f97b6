"""ExecuTorch: one ``.pte`` in the convention of ExecuTorch's LLM runner, delegated to XNNPACK.

The program has one method, ``forward(tokens int64 [1, T], input_pos int64 [1]) -> logits [1, V]``
with T dynamic (exporters/llm_forward.py), the KV cache in mutable buffers updated in place, and
the constant methods the runner reads (``get_max_seq_len``, ``get_bos_id``, ``get_eos_ids``, ...).
``TextLLMRunner`` (Python), ``llama_main`` (C++), Android's ``LlmModule`` and the iOS demo load it
with the ``tokenizer.json`` written beside it. Precisions:

* ``fp32``  : float weights and activations.
* ``int8``  : dynamic int8 activations, int8 per-channel (PerAxis(0)) weights (torchao).
* ``8da4w`` : dynamic int8 activations, int4 weights in groups of 32 (torchao).
"""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np

from exporters.backends import BACKENDS
from exporters.base import ExportError, library_versions, require, separate_head, tensor_spec
from exporters.logs import runtime_logs_hidden

BACKEND = BACKENDS["executorch"]  # the registry record: the one place its names and precisions live
PRECISIONS = BACKEND.precisions
SUFFIX = BACKEND.suffix
EXTRA = BACKEND.extra
CACHE = "buffers"
GROUP_SIZE = 32  # int4 weight group along the input dimension
# Cache write + attention: "llama" uses ExecuTorch's LLM custom ops (attention over the filled
# prefix; see exporters/llm_forward.py), which the LLM runner, its apps and this project's C++
# runners (apps/cpp/llm_ops.hpp) load; "aten" runs on any ExecuTorch runtime.
DEFAULT_OPS = BACKEND.ops[0]  # "llama"


def _quantize(wrapper, precision: str) -> None:
    """Replace the wrapper's weights in place with torchao quantized tensors.

    A tied embedding/LM head is stored twice in a ``.pte`` whatever one does: the lookup reads the
    program's constant, XNNPACK packs its own copy for the head (a head left outside XNNPACK
    decodes ~8x slower; one fed the shared table as a runtime input, ~2.6x: measured on
    SmolLM2's 49152 x 576 table). So at int8/8da4w both copies are quantized: the head becomes
    an ``nn.Linear`` of its own (quantized like every linear) and the lookup an int8-per-row
    ``embedding_byte`` (portable quantized kernel). For SmolLM2 that takes the table's two fp32
    copies (216 MiB) to ~54 MiB (int8)."""
    if precision == "fp32":
        return
    import torch
    from torch import nn

    require("torchao", EXTRA, "ExecuTorch quantization")
    from torchao.quantization import quantize_
    from torchao.quantization.granularity import PerAxis, PerGroup
    from torchao.quantization.quant_api import Int8DynamicActivationIntxWeightConfig, IntxWeightOnlyConfig

    from edge.model import MatFormerLM

    for lm in [m for m in wrapper.modules() if isinstance(m, MatFormerLM) and m.lm_head is None]:
        separate_head(lm)
    if precision == "int8":
        cfg = Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int8, weight_granularity=PerAxis(0))
    else:
        cfg = Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(GROUP_SIZE))
    quantize_(wrapper, cfg)
    quantize_(wrapper, IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0)),
              lambda m, fqn: isinstance(m, nn.Embedding))


def check(model, precision: str) -> None:
    """Reject combinations this backend cannot write, before any work."""
    if precision == "8da4w":
        bad = sorted({m for m in model.config.layer_ffn_sizes() if m % GROUP_SIZE}
                     | ({model.config.d_model} if model.config.d_model % GROUP_SIZE else set()))
        if bad:
            raise ExportError(f"precision 8da4w groups weights by {GROUP_SIZE} input features; "
                              f"widths {bad} are not multiples of {GROUP_SIZE} (use int8 or fp32)")


def constant_methods(config, context: int, tokenizer) -> dict:
    """The metadata methods ExecuTorch's LLM runner reads (``get_max_seq_len`` is required)."""
    from exporters.llm_forward import max_tokens

    # max_seq_len: the most tokens one forward call takes (the runner chunks longer prompts);
    # max_context_len: the KV-cache slots.
    return {"get_max_seq_len": max_tokens(context), "get_max_context_len": context,
            "get_vocab_size": config.vocab_size, "get_n_layers": config.n_layers,
            "get_bos_id": tokenizer.bos_id if tokenizer.bos_id is not None else -1,
            "get_eos_ids": list(tokenizer.eos_ids), "use_kv_cache": True, "enable_dynamic_shape": True}


def export(model, precision: str, out_path: Path, *, context: int, prefill_len: int | None = None,
           tokenizer=None, ops: str = DEFAULT_OPS) -> dict:
    """Write ``out_path`` (.pte) for a dense model; return metadata (entry points, cache, ...).

    ``prefill_len`` is accepted for the common exporter signature: ``forward`` takes any T.
    ``tokenizer`` (edge.tokenizer.Tokenizer, default the byte tokenizer) gives BOS/EOS ids."""
    require("executorch.exir", EXTRA, "the ExecuTorch exporter")
    from edge.tokenizer import byte_tokenizer
    from exporters.llm_forward import make_forward

    check(model, precision)
    tokenizer = tokenizer or byte_tokenizer()
    # make_forward freezes the parameters and sets eval mode: both are given back below
    grads, training = [p.requires_grad for p in model.parameters()], model.training
    try:
        # fp32 changes no weight: export over the model itself (quantization replaces weights: a copy)
        wrapper = make_forward(model, context, ops, copy_model=precision != "fp32")
        return _lower(wrapper, model, precision, out_path, context, tokenizer, ops)
    finally:
        for p, g in zip(model.parameters(), grads):
            p.requires_grad_(g)
        model.train(training)
        gc.collect()  # the exported graphs hold reference cycles: free them before parity loads the file


def backend_config(precision: str, reinplace: bool = True):
    """The ``ExecutorchBackendConfig`` of every ``.pte`` written here (standalone and elastic).

    One KV cache shared by all methods, its buffers named; reinplace (default): the cache write
    becomes an in-place ``index_put_`` instead of index_put + a copy of the whole cache per step
    (measured 0.08-0.14 ms/token of the demo model's decode); quantized precisions: torchao's
    int8 embedding fused into ``embedding_byte`` (see ``_quantize``)."""
    from executorch.exir import ExecutorchBackendConfig
    from executorch.exir.passes import MemoryPlanningPass

    return ExecutorchBackendConfig(memory_planning_pass=MemoryPlanningPass(share_mutable_buffers=True),
                                   emit_mutable_buffer_names=True, run_reinplace_pass=reinplace,
                                   do_quant_fusion_and_const_prop=precision != "fp32")


def _lower(wrapper, model, precision: str, out_path: Path, context: int, tokenizer, ops: str) -> dict:
    """torch.export -> XNNPACK lowering -> .pte at ``out_path``; the metadata of export()."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    from exporters.llm_forward import example_args

    _quantize(wrapper, precision)
    consts = constant_methods(model.config, context, tokenizer)
    args, dynamic = example_args(context)
    with torch.no_grad():
        program = torch.export.export(wrapper, args, dynamic_shapes=dynamic, strict=False)
    edge = to_edge_transform_and_lower(
        {"forward": program}, partitioner=[XnnpackPartitioner()],
        constant_methods=consts,
        # llama::* custom ops are not core ATen: the IR check would refuse them
        compile_config=EdgeCompileConfig(_check_ir_validity=ops == "aten"))
    Path(out_path).write_bytes(edge.to_executorch(backend_config(precision)).buffer)
    return {"entry_points": entry_points(wrapper, context), "cache": CACHE, "ops": ops,
            "delegate": "XnnpackBackend", "libraries": library_versions("executorch", "torchao"),
            "quantization": _describe(precision),
            "constant_methods": consts}


def entry_points(wrapper, context: int) -> dict:
    """The signature of ``forward`` for the metadata JSON (shapes at their largest T)."""
    from exporters.llm_forward import max_tokens

    core = wrapper.core
    T = max_tokens(context)
    state = [tensor_spec(f"{kv}_cache_{i}", tuple(getattr(wrapper, f"{kv}_cache_{i}").shape), "float32")
             for i in range(core.n_layers) for kv in ("k", "v")]
    return {"forward": {
        "inputs": [tensor_spec("tokens", (1, T), "int64"), tensor_spec("input_pos", (1,), "int64")],
        "outputs": [tensor_spec("logits", (1, core.model.config.vocab_size), "float32")],
        "state": state, "dynamic": {"tokens": {"1": [1, T]}},
        "doc": "T tokens (1 <= T <= context - 1) at positions input_pos .. input_pos + T - 1: writes those "
               "cache slots, attends to slots [0, input_pos + T), returns the last token's logits. "
               "A prompt is one call at input_pos 0 (or several chunks); decode is T = 1."}}


def _describe(precision: str) -> str:
    return {"fp32": "none",
            "int8": "torchao Int8DynamicActivationIntxWeightConfig(int8, PerAxis(0)) on every nn.Linear",
            "8da4w": f"torchao Int8DynamicActivationIntxWeightConfig(int4, PerGroup({GROUP_SIZE})) on every nn.Linear",
            }[precision]


def load_kernels() -> None:
    """Register ExecuTorch's quantized kernels in this process. An int8/8da4w program looks its
    embedding up with ``quantized_decomposed::embedding_byte``, which ``executorch.runtime`` and
    ``TextLLMRunner`` only have once this module is imported (ExecuTorch's LLM apps and this
    project's C++ runners link ``quantized_ops_lib``)."""
    import executorch.kernels.quantized  # noqa: F401  (registers on import)


class ExecuTorchRunner:
    """Runs a .pte's ``forward`` with ``executorch.runtime``; the cache lives inside the program.

    ``prefill``/``decode`` (the project's Runner protocol) are ``forward`` at position 0 and at
    ``position``; ``forward`` itself takes any chunk at any position."""

    label = "executorch.runtime (XNNPACK delegate)"

    def __init__(self, path: Path, meta: dict | None = None):
        require("executorch.runtime", EXTRA, "running a .pte")
        from executorch.runtime import Runtime

        if (meta or {}).get("ops") == "llama":
            from exporters.llm_forward import load_llama_ops

            load_llama_ops()
        load_kernels()
        self.program = Runtime.get().load_program(Path(path))
        if "forward" not in self.program.method_names:
            raise ExportError(f"{Path(path).name} has no forward method: an older prefill/decode .pte? "
                              f"Export it again with `matedge export`")
        with runtime_logs_hidden():  # XNNPACK's first load prints cpuinfo probing lines
            self.method = self.program.load_method("forward")

    def forward(self, tokens: np.ndarray, input_pos: int) -> np.ndarray:
        """tokens (1, T) at positions input_pos.. -> logits (1, V) of the last one."""
        import torch

        out = self.method.execute([torch.as_tensor(np.asarray(tokens, dtype=np.int64)).reshape(1, -1),
                                   torch.tensor([input_pos], dtype=torch.int64)])
        return out[0].numpy()

    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        return self.forward(tokens, 0)

    def decode(self, token: int, position: int) -> np.ndarray:
        return self.forward(np.array([[token]]), position)


def load_runner(path: Path, meta: dict | None = None) -> ExecuTorchRunner:
    """A runner on the real ExecuTorch runtime."""
    return ExecuTorchRunner(path, meta)


def set_threads(n: int) -> None:
    """Size ExecuTorch's shared CPU threadpool (XNNPACK uses it)."""
    from executorch.extension.pybindings import portable_lib

    portable_lib._unsafe_reset_threadpool(n)
