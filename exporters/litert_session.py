"""A LiteRT ``.tflite`` loaded for generation: caches updated in place, packed weights shared.

The Interpreter API's signature runners copy every input in and every output out on each call;
with caches passed as tensors that is the whole KV cache twice per token (94 MB each way for
SmolLM2 at a context of 2,048, more time than the model's own weights take). This session uses
LiteRT's ``CompiledModel`` with tensor buffers instead, as LiteRT-LM's engine does:

* each ``kv_cache_*`` buffer is bound as both the input and the output of every signature, so
  ``DYNAMIC_UPDATE_SLICE`` writes the new slots in place and nothing is copied between calls;
  all signatures (prompt lengths, attention windows, elastic members) share those buffers;
* XNNPACK packs a signature's weights when it first runs; with a weight-cache file the packed
  weights are stored once and shared by every signature (measured on SmolLM2 S fp32 with five
  signatures: 600 MB resident instead of 1,490 MB). The file lives in a private temporary
  folder, removed when the session is closed or collected: it is keyed by offsets in this model,
  so it is never reused for another file.

Shapes: ``tokens`` int32 (1, T), ``input_pos`` int32 (T,), ``mask`` float32 (1, 1, T, W) with W
the signature's attention window (the context C for ``decode``/``prefill_<T>``), caches as the
artifact's metadata lists them; logits (1, T, V) or (T, V) as the signature returns them.
"""

from __future__ import annotations

import os
import shutil
import weakref
from pathlib import Path

import numpy as np

from edge import interrupt
from exporters.base import require
from exporters.litert import MASK_VALUE
from exporters.logs import hide_stderr_at_exit, runtime_logs_hidden

CACHE_PREFIX = "kv_cache_"


def check_structure(path) -> None:
    """Raise on a malformed file before CompiledModel sees it: the Interpreter API verifies the
    flatbuffer and allocates every signature's tensors and raises where CompiledModel may crash
    (a file rewritten together with its metadata passes the checksum). Without delegates
    nothing is packed: a parse, 0.1 s and < 150 MB transient for SmolLM2 XL fp32."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_path=str(path),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    for name in interp.get_signature_list():
        runner = interp.get_signature_runner(name)
        runner._interpreter_wrapper.AllocateTensors(runner._subgraph_index)


def _remove(folder: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    interrupt.untrack(Path(folder))


class LiteRTSession:
    """``call(signature, tokens, start)`` on a CompiledModel whose caches persist between calls."""

    def __init__(self, path, threads: int | None = None):
        require("ai_edge_litert", "litert", "running a .tflite")
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.cpu_options import CpuOptions
        from ai_edge_litert.options import Options

        self.model = None
        # Registered, so a signal that stops the command removes it too (os._exit skips finalizers).
        self._tmp = str(interrupt.make_temp_dir("matedge-xnnpack-"))
        self._cleanup = weakref.finalize(self, _remove, self._tmp)
        cpu = CpuOptions(num_threads=threads or min(2, os.cpu_count() or 1),
                         xnnpack_weight_cache_path=os.path.join(self._tmp, "weights.xnnpack_cache"))
        hide_stderr_at_exit()  # a LiteRT environment may outlive this session and log as it ends
        with runtime_logs_hidden():  # LiteRT logs its accelerator registry and plugin probing
            check_structure(path)
            self.model = CompiledModel.from_file(str(path), options=Options(cpu_options=cpu))
        self.signatures = list(self.model.get_signature_list())
        self.caches: dict[str, object] = {}  # name -> TensorBuffer shared by every signature
        self.cache_shapes: dict[str, tuple[int, ...]] = {}
        self._bound: dict[str, tuple[dict, dict, dict, dict]] = {}

    def inputs(self, signature: str) -> dict:
        """name -> {"shape", "dtype"} of a signature's inputs."""
        return {k: {"shape": tuple(d["shape"]), "dtype": np.dtype(d["dtype"])}
                for k, d in self.model.get_input_tensor_details(signature).items()}

    def _bind(self, signature: str) -> None:
        """Make a signature's input and output buffers (on its first call)."""
        ins, outs, shapes = {}, {}, self.inputs(signature)
        for name, d in shapes.items():
            if name.startswith(CACHE_PREFIX):
                if name not in self.caches:
                    self.caches[name] = self.model.create_input_buffer_by_name(signature, name)
                    self.cache_shapes[name] = d["shape"]
                    self.caches[name].write(np.zeros(d["shape"], np.float32))
                ins[name] = outs[name] = self.caches[name]  # in place: input is output
            else:
                ins[name] = self.model.create_input_buffer_by_name(signature, name)
        out_details = self.model.get_output_tensor_details(signature)
        for name in out_details:
            if name not in outs:
                outs[name] = self.model.create_output_buffer_by_name(signature, name)
        self._bound[signature] = (ins, outs, shapes, {k: tuple(d["shape"]) for k, d in out_details.items()})

    def call(self, signature: str, tokens: np.ndarray, start: int) -> np.ndarray | None:
        """tokens (T,) at slots start..start+T-1 -> the signature's logits (None if it has none)."""
        if signature not in self._bound:
            with runtime_logs_hidden():  # the first buffers create a second LiteRT environment, which logs
                self._bind(signature)
        ins, outs, shapes, out_shapes = self._bound[signature]
        T, W = shapes["tokens"]["shape"][-1], shapes["mask"]["shape"][-1]
        pos = np.arange(start, start + T, dtype=np.int32)
        mask = np.where(np.arange(W)[None, :] <= pos[:, None], 0.0, MASK_VALUE).astype(np.float32)
        ins["tokens"].write(np.asarray(tokens, np.int32).reshape(1, T))
        ins["input_pos"].write(pos)
        ins["mask"].write(mask.reshape(1, 1, T, W))
        self.model.run_by_name(signature, ins, outs)
        if "logits" not in outs:
            return None
        shape = out_shapes["logits"]
        return outs["logits"].read(int(np.prod(shape)), np.float32).reshape(shape)

    def reset(self) -> None:
        """Zero every cache (a new conversation)."""
        for name, buf in self.caches.items():
            buf.write(np.zeros(self.cache_shapes[name], np.float32))

    def close(self) -> None:
        """Release the model and remove the weight-cache folder."""
        if self.model is None:
            return
        with runtime_logs_hidden():  # the environments log every accelerator they destroy
            self._bound.clear()
            self.caches.clear()
            self.model = None
        self._cleanup()

    def __del__(self):
        # Dropped without close(): release here, with the runtime's teardown lines hidden,
        # rather than wherever the garbage collector happens to free the environments.
        try:
            self.close()
        except Exception:  # interpreter shutdown: modules may already be gone
            pass
