"""An elastic LiteRT model: several MatFormer submodels ("members") in one ``.tflite``.

The LiteRT counterpart of exporters/elastic.py. The file holds, per member ``<m>``,

* ``prefill_<m>``: T = ``prefill_len`` tokens (right-padded when fewer), and
* ``decode_<m>``: T = 1, and
* ``decode_<m>_w<N>``: T = 1 attending to the first N cache slots only (N from
  exporters.litert.decode_windows: C/8, C/4, C/2), the same logits below N at a fraction of the
  cost at a long context, as in a one-size LiteRT file,

all in LiteRT-LM's tensor convention (exporters/litert_lm.py): inputs ``tokens`` int32 (1, T),
``input_pos`` int32 (T,), ``mask`` float32 (1, 1, T, C) and the caches ``kv_cache_k_<i>`` (1, Hkv,
C, hd) / ``kv_cache_v_<i>`` (1, Hkv, hd, C); outputs the updated caches and ``logits`` (1, T, V)
of every position (a speculative verifier and switching-quality runs need them all).

* The weights are stored once: every FFN is blocked (exporters/blocked.py) and every signature is
  traced over the same parameter tensors, which the converter writes once (measured: the size
  of XL alone plus each extra signature's graph).
* One KV cache: LiteRT drops in-place buffer writes, so the caches are explicit tensors that the
  runner passes from one call to the next, whichever member's signature it calls. A member reads
  the K/V the previous members wrote: switching between tokens needs no re-prefill.

LiteRT-LM's ``Engine`` cannot select among signatures (it looks up ``prefill_<T>``/``decode``),
so stock apps keep one ``.litertlm`` per size; this file is for the project's own runners
(``ElasticLiteRTRunner`` here, LiteRT.js in the web app).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from exporters.base import ExportError, library_versions, require
from exporters.decoding import KVCore
from exporters.elastic import check_member_names, elastic_base, member_metadata

SUFFIX = ".tflite"
PREFILL_LEN = 8  # tokens per prefill call: longer prompts run in chunks, a verifier's k+1 in one


def signature(kind: str, member: str, window: int | None = None) -> str:
    """``prefill_<member>``, ``decode_<member>`` or (a window) ``decode_<member>_w<window>``."""
    return f"{kind}_{member}" + (f"_w{window}" if window else "")


def member_calls(windows: Sequence[int], prefill_len: int = PREFILL_LEN) -> list[tuple[str, int, int | None]]:
    """(kind, tokens per call, window) of each member's signatures: prefill, decode, windowed decodes."""
    return [("prefill", prefill_len, None), ("decode", 1, None), *(("decode", 1, w) for w in windows)]


def signature_names(members, windows: Sequence[int]) -> dict[str, str]:
    """signature -> member, every member's prefill, decode and windowed decodes; ExportError when
    two would share a name (a member called ``S_w32`` beside ``S`` with a window of 32)."""
    names = [(signature(k, m, w), m) for m in members for k, _, w in member_calls(windows)]
    out = dict(names)
    if len(out) != len(names):
        raise ExportError(f"member names {list(members)} give clashing signature names with windows {list(windows)}")
    return out


def export_elastic(model, members: Mapping[str, Sequence[str] | None], out_path: Path, *, context: int,
                   default: str | None = None, precision: str = "fp32", tokenizer=None,
                   prefill_len: int = PREFILL_LEN) -> dict:
    """Write one ``.tflite`` with ``prefill_<m>``, ``decode_<m>`` and ``decode_<m>_w<N>`` per member
    (N from decode_windows(context)); return metadata.

    ``members``: name -> spec of a universal model, or one ``{name: None}`` for a dense model (a
    standalone file in the same convention). ``precision``: fp32 or int8 (dynamic range).
    ``tokenizer`` is accepted for the common elastic interface; the ``.tflite`` does not carry it."""
    litert_torch = require("litert_torch", "litert", "the LiteRT exporter")
    from exporters.litert import decode_windows
    from exporters.litert_lm import LiteRTLMGraph, sample_kwargs

    if precision not in ("fp32", "int8"):
        raise ExportError(f"an elastic LiteRT model is fp32 or int8, not {precision!r}")
    if not 1 < prefill_len < context:
        raise ExportError(f"prefill_len {prefill_len} must be in [2, context - 1 = {context - 1}]")
    default = check_member_names(members, default)
    windows = decode_windows(context)
    names = signature_names(members, windows)
    base, blocks = elastic_base(model, members)
    core = KVCore(base, context, prefill_len=1)  # one set of RoPE tables and norms for every member
    # (signature, graph, T) for every member: prefill, decode, then the windowed decodes
    graphs = [(signature(kind, n, w), LiteRTLMGraph(base, context, logits=True, n_blocks=b, core=core, window=w).eval(), T)
              for n, b in blocks.items()
              for kind, T, w in member_calls(windows, prefill_len)]
    kwargs = {}
    if precision == "int8":
        from litert_torch.generative.quantize import quant_recipes

        kwargs["quant_config"] = quant_recipes.full_dynamic_recipe()
    conv = None
    with torch.no_grad():
        for name, g, T in graphs:
            sign = litert_torch.signature if conv is None else conv.signature
            conv = sign(name, g, sample_kwargs=sample_kwargs(g, T))
        out_path = Path(out_path)
        tmp = out_path.with_name(f".{out_path.name}.tmp")
        conv.convert(**kwargs).export(str(tmp))
    tmp.replace(out_path)
    return {**member_metadata(model, members, default, context, precision),
            "signatures": names, "decode_windows": windows,
            "entry_points": entry_points(model, members, context, prefill_len, windows),
            "prefill_len": prefill_len, "libraries": library_versions("litert-torch", "ai-edge-litert"),
            "entry": "prefill_<m> (T = prefill_len) / decode_<m> (T = 1): tokens int32 [1, T], input_pos int32 "
                     "[T], mask float32 [1, 1, T, C], kv_cache_k_<i>, kv_cache_v_<i> -> logits float32 "
                     "[1, T, V] + the updated caches; pass the caches returned by any member's last call; "
                     "decode_<m>_w<N>: the same with mask [1, 1, 1, N], for positions below N"}


def entry_points(model, members, context: int, prefill_len: int, windows: Sequence[int] = ()) -> dict:
    """Every signature's inputs and outputs (the names an app feeds), as exporters.litert lists
    them for a one-size file; here prefill returns logits too."""
    from exporters.base import tensor_spec
    from exporters.litert import entry_points as one_size

    eps = one_size(model, context, [prefill_len], windows)
    pre, dec = eps[f"prefill_{prefill_len}"], eps["decode"]
    logits = tensor_spec("logits", (1, prefill_len, model.config.vocab_size), "float32")
    out = {}
    for m in members:
        out[signature("prefill", m)] = {**pre, "outputs": [logits, *pre["outputs"]], "member": m}
        out[signature("decode", m)] = {**dec, "member": m}
        for w in windows:
            out[signature("decode", m, w)] = {**eps[f"decode_w{w}"], "member": m}
    return out


class ElasticLiteRTRunner:
    """``run(tokens, pos, member) -> logits (T, V)`` over one set of caches, on ``ai_edge_litert``.

    The same interface as exporters.elastic_runner.ElasticRunner, so edge.device.elastic's
    greedy / speculative / switching_quality and the latency controller drive either backend."""

    label = "ai_edge_litert CompiledModel (XNNPACK), elastic"

    def __init__(self, path: Path, members: Sequence[str] | None = None, threads: int | None = None):
        from exporters.litert import window_sizes
        from exporters.litert_session import LiteRTSession

        self.path = Path(path)
        # one CompiledModel: every member's signatures bind the same cache buffers (in place), and
        # the XNNPACK weight cache packs the shared weight blocks once for all members
        self.session = LiteRTSession(path, threads)
        sigs = self.session.signatures
        found = [n[len("prefill_"):] for n in sigs if n.startswith("prefill_")]
        self.members = list(members) if members is not None else found
        missing = [m for m in self.members if signature("decode", m) not in sigs or signature("prefill", m) not in sigs]
        if missing:
            raise ExportError(f"{self.path}: no signatures for member(s) {missing} (has: {', '.join(found)})")
        self.context = int(self.session.inputs(signature("decode", self.members[0]))["mask"]["shape"][-1])
        pre = self.session.inputs(signature("prefill", self.members[0]))
        self.prefill_len = int(pre["tokens"]["shape"][-1])
        self.member = self.members[-1] if self.members else None
        # member -> its decode windows N (decode_<m>_w<N>), smallest first; files before windows have none
        self.windows = {m: window_sizes(sigs, f"{signature('decode', m)}_w") for m in self.members}

    def reset(self) -> None:
        """Empty the caches (a new conversation)."""
        self.session.reset()

    def close(self) -> None:
        """Release the runtime and its weight-cache file."""
        self.session.close()

    def decode_signature(self, member: str, position: int) -> str:
        """``member``'s cheapest decode whose attention window holds slot ``position``."""
        window = next((w for w in self.windows[member] if position < w), None)
        return signature("decode", member, window)

    def _call(self, kind: str, member: str, tokens: np.ndarray, start: int) -> np.ndarray:
        """tokens (T,) at slots start..: logits (T, V); the caches are updated in place."""
        name = self.decode_signature(member, start) if kind == "decode" else signature(kind, member)
        return self.session.call(name, tokens, start)[0]

    def run(self, tokens: Sequence[int] | np.ndarray, pos: int, member: str | None = None) -> np.ndarray:
        """Run tokens at positions pos..pos+T-1 as ``member`` -> logits of every one (T, V);
        writes those cache slots (None: the current member, ``self.member``)."""
        toks = np.asarray(tokens, dtype=np.int32).reshape(-1)
        member = member if member is not None else self.member
        if pos < 0 or pos + len(toks) > self.context:
            raise ExportError(f"{len(toks)} tokens at position {pos} do not fit the context {self.context}")
        if member not in self.members:
            raise ExportError(f"no member {member!r} (has: {', '.join(self.members)})")
        out, i, P = [], 0, self.prefill_len
        while i < len(toks):
            n = min(P, len(toks) - i)
            if n == 1 or pos + i + P > self.context:  # a padded chunk must not run past the cache end
                out.append(self._call("decode", member, toks[i:i + 1], pos + i))
                i += 1
                continue
            # Right-pad to P: the padded slots get K/V that later tokens overwrite before any
            # query may attend to them (a query at p sees slots <= p, and slot p is written first).
            chunk = np.concatenate([toks[i:i + n], np.zeros(P - n, np.int32)])
            out.append(self._call("prefill", member, chunk, pos + i)[:n])
            i += n
        return np.concatenate(out)

    def forward(self, tokens: np.ndarray, input_pos: int) -> np.ndarray:
        """The LLM-runner call on the current member: tokens (1, T) -> logits (1, V) of the last."""
        return self.run(tokens, input_pos)[-1:]

    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        """tokens (1, T) -> logits (1, T, V) from position 0 (a new conversation)."""
        self.reset()
        return self.run(np.asarray(tokens).reshape(-1), 0)[None]

    def decode(self, token: int, position: int) -> np.ndarray:
        """One token at ``position`` -> logits (1, 1, V)."""
        return self.run([token], position)[None]


def load_runner(path: Path, members: Sequence[str] | None = None) -> ElasticLiteRTRunner:
    """The runner of an elastic ``.tflite`` (members cheapest first, as the metadata lists them)."""
    return ElasticLiteRTRunner(path, members)
