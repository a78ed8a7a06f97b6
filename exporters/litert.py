"""LiteRT: one ``.tflite`` with signatures ``prefill`` and ``decode`` (litert-torch).

KV cache: explicit inputs/outputs. LiteRT silently drops in-place buffer writes (a cache kept
in buffers converts without error and then decodes wrong), so the cache is passed in and out.
Precisions: ``fp32`` and ``int8`` (litert-torch's dynamic-range recipe: int8 weights, int8
activations quantized on the fly). Executed with ``ai_edge_litert`` (XNNPACK by default).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from exporters.backends import BACKENDS
from exporters.base import library_versions, require
from exporters.decoding import entry_modules, entry_points, example_inputs, make_wrapper

BACKEND = BACKENDS["litert"]  # the registry record: the one place its names and precisions live
PRECISIONS = BACKEND.precisions
SUFFIX = BACKEND.suffix
EXTRA = BACKEND.extra
CACHE = "io"


def check(model, precision: str) -> None:
    """Nothing model-specific to reject: every dense spec converts."""


def export(model, precision: str, out_path: Path, *, context: int, prefill_len: int) -> dict:
    """Write ``out_path`` (.tflite) for a dense model; return metadata (entry points, cache, ...)."""
    import torch

    litert_torch = require("litert_torch", EXTRA, "the LiteRT exporter")
    wrapper = make_wrapper(model, context, CACHE, prefill_len)
    args = example_inputs(wrapper, prefill_len)
    kwargs = {}
    if precision == "int8":
        from litert_torch.generative.quantize import quant_recipes

        # QuantConfig(pt2e_quantizer=...) silently does nothing in litert-torch 0.10; recipes work.
        kwargs["quant_config"] = quant_recipes.full_dynamic_recipe()
    with torch.no_grad():
        modules = entry_modules(wrapper)
        converter = litert_torch.signature("prefill", modules["prefill"], args["prefill"])
        converter = converter.signature("decode", modules["decode"], args["decode"])
        converter.convert(**kwargs).export(str(out_path))
    # The converter turns int64 inputs into int32 and names tensors args_i / output_i (call and
    # return order): the metadata records both the meaning and the file's own names.
    eps = entry_points(wrapper, prefill_len, "int32")
    names = LiteRTRunner(out_path, {"cache": CACHE}).names()
    for sig, ep in eps.items():
        for key in ("inputs", "outputs"):
            for tensor, tflite_name in zip(ep[key], names[sig][key]):
                tensor["tflite_name"] = tflite_name
    return {"entry_points": eps, "cache": CACHE,
            "delegate": "XNNPACK (LiteRT default CPU delegate)",
            "libraries": library_versions("litert-torch", "ai-edge-litert"),
            "quantization": "litert_torch quant_recipes.full_dynamic_recipe()" if precision == "int8" else "none"}


class LiteRTRunner:
    """Runs a .tflite's two signatures with ``ai_edge_litert``; keeps the caches between calls."""

    label = "ai_edge_litert Interpreter (XNNPACK)"

    def __init__(self, path: Path, meta: dict | None = None, threads: int | None = None):
        require("ai_edge_litert", EXTRA, "running a .tflite")
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(model_path=str(path), num_threads=threads or min(2, os.cpu_count() or 1))
        self.prefill_r = self.interp.get_signature_runner("prefill")
        self.decode_r = self.interp.get_signature_runner("decode")
        self.caches: dict[str, np.ndarray] = {}

    def names(self) -> dict:
        """TFLite tensor names of each signature's inputs and outputs (args_0, output_0, ...)."""
        sigs = self.interp.get_signature_list()
        return {k: {"inputs": list(v["inputs"]), "outputs": list(v["outputs"])} for k, v in sigs.items()}

    @staticmethod
    def _ordered(out: dict) -> list[np.ndarray]:
        # litert-torch names outputs output_0, output_1, ... in the module's return order
        return [out[k] for k in sorted(out, key=lambda n: int(n.rsplit("_", 1)[-1]))]

    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        logits, k, v = self._ordered(self.prefill_r(args_0=np.asarray(tokens, dtype=np.int32)))
        self.caches = {"args_2": k, "args_3": v}
        return logits

    def decode(self, token: int, position: int) -> np.ndarray:
        out = self._ordered(self.decode_r(args_0=np.array([[token]], dtype=np.int32),
                                          args_1=np.array([position], dtype=np.int32), **self.caches))
        self.caches = {"args_2": out[1], "args_3": out[2]}
        return out[0]


def load_runner(path: Path, meta: dict | None = None) -> LiteRTRunner:
    """A runner on the real LiteRT interpreter."""
    return LiteRTRunner(path, meta)
