"""An elastic Core ML package: several MatFormer submodels ("members") in one ``.mlpackage``.

The Core ML counterpart of exporters/elastic.py, in exporters/coreml.py's convention: per member
``<m>`` two functions of one ML program (iOS 18 multifunction package),

* ``prefill_<m>(tokens int32 [1, P]) -> logits [1, P, V], k_cache_out, v_cache_out`` (from
  position 0; a shorter prompt is right-padded), and
* ``decode_<m>(token int32 [1, 1], position int32 [1], k_cache, v_cache) -> logits [1, 1, V],
  k_cache_out, v_cache_out``, caches fp16 (L, Hkv, C, hd).

Each member is a view of one blocked model (exporters/blocked.py ``member_view``: the same
tensors, granularity g of a layer = its first g blocks), converted function by function and
merged with ``ct.utils.save_multifunction``, which stores identical weights once. The caches are
explicit tensors, so the app passes any member's returned caches to the next member's decode:
one KV cache, switching between tokens. Prediction needs macOS; elsewhere the runner evaluates
the saved graph with coremltools' value inference (exporters/coreml_eval.py).
"""

from __future__ import annotations

import platform
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from exporters.base import ExportError, library_versions, require
from exporters.blocked import member_view
from exporters.elastic import check_member_names, elastic_base, member_metadata

SUFFIX = ".mlpackage"
PREFILL_LEN = 8


def function_name(kind: str, member: str) -> str:
    """``prefill_<member>`` or ``decode_<member>``."""
    return f"{kind}_{member}"


def export_elastic(model, members: Mapping[str, Sequence[str] | None], out_path: Path, *, context: int,
                   default: str | None = None, precision: str = "fp16", tokenizer=None,
                   prefill_len: int = PREFILL_LEN) -> dict:
    """Write one ``.mlpackage`` with ``prefill_<m>`` and ``decode_<m>`` per member; return metadata.

    ``precision``: fp16, int8 or pal4 (each function is compressed before the merge, as
    exporters/coreml.py does). ``tokenizer`` is accepted for the common interface (Core ML has
    no place for one: the build writes tokenizer.json beside the package)."""
    import torch

    ct = require("coremltools", "coreml", "the Core ML exporter")
    from exporters.coreml import _compress, _convert, structure
    from exporters.decoding import IOCacheLM, entry_modules, example_inputs

    if precision not in ("fp16", "int8", "pal4"):
        raise ExportError(f"an elastic Core ML package is fp16, int8 or pal4, not {precision!r}")
    default = check_member_names(members, default)
    base, blocks = elastic_base(model, members)
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".coreml-parts-") as tmp:
        desc = ct.utils.MultiFunctionDescriptor()
        for name, n_blocks in blocks.items():
            wrapper = IOCacheLM(base if n_blocks is None else member_view(base, n_blocks), context, prefill_len)
            args = example_inputs(wrapper, prefill_len, torch.int32)
            for kind, module in entry_modules(wrapper).items():
                part = Path(tmp) / f"{function_name(kind, name)}.mlpackage"
                _compress(_convert(ct, module, args[kind], kind), precision).save(str(part))
                desc.add_function(str(part), src_function_name="main", target_function_name=function_name(kind, name))
        desc.default_function_name = function_name("decode", default)
        staged = Path(tmp) / "merged.mlpackage"
        ct.utils.save_multifunction(desc, str(staged))
        staged.rename(out_path)  # complete, then in place: a failed export leaves nothing
    return {**member_metadata(model, members, default, context, precision),
            "functions": {function_name(k, n): n for n in members for k in ("prefill", "decode")},
            "prefill_len": prefill_len, "libraries": library_versions("coremltools"),
            "structure": structure(out_path),
            "entry": "prefill_<m>(tokens int32 [1, P]) from position 0 / decode_<m>(token int32 [1, 1], position "
                     "int32 [1], k_cache, v_cache fp16 (L, Hkv, C, hd)) -> logits + k_cache_out, v_cache_out; "
                     "pass the caches returned by any member's last call"}


class ElasticCoreMLRunner:
    """``run(tokens, pos, member) -> logits (T, V)`` over one pair of fp16 caches.

    On macOS Apple's runtime (``MLModel(function_name=...)``); elsewhere coremltools' value
    inference of the saved graph (a graph-level check, not Apple's kernels). A prompt at
    position 0 goes through ``prefill_<m>`` (right-padded to P; longer ones continue token by
    token), every other token through ``decode_<m>``: the interface of the other elastic runners."""

    def __init__(self, path: Path, members: Sequence[str] | None = None):
        ct = require("coremltools", "coreml", "running a .mlpackage")
        self.path = Path(path)
        spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
        fns = {f.name: f for f in spec.description.functions}
        found = [n[len("decode_"):] for n in fns if n.startswith("decode_")]
        self.members = list(members) if members is not None else found
        missing = [m for m in self.members if function_name("decode", m) not in fns
                   or function_name("prefill", m) not in fns]
        if missing:
            raise ExportError(f"{self.path}: no functions for member(s) {missing} (has: {', '.join(found)})")
        first = fns[function_name("decode", found[0])]
        self.cache_shape = tuple(int(d) for d in next(x for x in first.input if x.name == "k_cache").type.multiArrayType.shape)
        self.context = self.cache_shape[2]  # (L, Hkv, C, hd)
        pre = fns[function_name("prefill", found[0])]
        self.prefill_len = int(pre.input[0].type.multiArrayType.shape[1])
        self.on_device = platform.system() == "Darwin"
        self.label = ("Core ML runtime (macOS), elastic" if self.on_device else
                      "coremltools MIL value inference (graph-level check, not Apple's kernels), elastic")
        self._models: dict[str, object] = {}
        self._prog = None
        self.reset()
        self.member = self.members[-1] if self.members else None

    def reset(self) -> None:
        """Empty the caches (a new conversation)."""
        self.caches = {n: np.zeros(self.cache_shape, np.float16) for n in ("k_cache", "v_cache")}

    def _call(self, name: str, feeds: dict) -> np.ndarray:
        """Run function ``name`` with ``feeds`` + the caches; keep the returned caches; logits fp32."""
        feeds = {**feeds, **self.caches} if name.startswith("decode_") else feeds
        if self.on_device:
            import coremltools as ct

            if name not in self._models:
                self._models[name] = ct.models.MLModel(str(self.path), function_name=name)
            out = self._models[name].predict(feeds)
        else:
            from exporters.coreml_eval import load_program, run_function

            self._prog = self._prog or load_program(self.path)
            out = run_function(self._prog, name, feeds)
        self.caches = {"k_cache": np.asarray(out["k_cache_out"]), "v_cache": np.asarray(out["v_cache_out"])}
        return np.asarray(out["logits"], dtype=np.float32)[0]

    def run(self, tokens, pos: int, member: str | None = None) -> np.ndarray:
        """Tokens at positions pos..pos+T-1 as ``member`` -> logits of every one (T, V)."""
        toks = np.asarray(tokens, dtype=np.int32).reshape(-1)
        member = member if member is not None else self.member
        if member not in self.members:
            raise ExportError(f"no member {member!r} (has: {', '.join(self.members)})")
        if pos < 0 or pos + len(toks) > self.context:
            raise ExportError(f"{len(toks)} tokens at position {pos} do not fit the context {self.context}")
        out, i = [], 0
        if pos == 0 and len(toks) > 1:  # prefill writes slots [0, P); padded slots are masked, then overwritten
            n = min(len(toks), self.prefill_len)
            chunk = np.zeros((1, self.prefill_len), np.int32)
            chunk[0, :n] = toks[:n]
            out.append(self._call(function_name("prefill", member), {"tokens": chunk})[:n])
            i = n
        for t in range(i, len(toks)):
            out.append(self._call(function_name("decode", member), {
                "token": toks[t:t + 1].reshape(1, 1), "position": np.array([pos + t], np.int32)}))
        return np.concatenate(out)

    def forward(self, tokens, input_pos: int) -> np.ndarray:
        return self.run(tokens, input_pos)[-1:]

    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        """tokens (1, T) -> logits (1, T, V) from position 0 (a new conversation)."""
        return self.run(np.asarray(tokens).reshape(-1), 0)[None]

    def decode(self, token: int, position: int) -> np.ndarray:
        return self.run([token], position)[None]


def load_runner(path: Path, members: Sequence[str] | None = None) -> ElasticCoreMLRunner:
    """The runner of an elastic ``.mlpackage`` (Apple's runtime on macOS, value inference elsewhere)."""
    return ElasticCoreMLRunner(path, members)
