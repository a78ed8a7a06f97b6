"""An elastic ExecuTorch program: several MatFormer submodels ("members") in one ``.pte``.

Each member is a Mix'n'Match spec of the same universal model. The program holds

* one forward-style method per member, ``forward_<name>(tokens int64 [1, T], input_pos int64 [1])
  -> logits float32 [1, T, V]`` with T dynamic, and ``forward`` = the default member, so the stock
  ExecuTorch LLM runner (``TextLLMRunner``, ``llama_main``, Android ``LlmModule``) runs it as is;
* one KV cache (mutable buffers ``cache.k_<i>``/``cache.v_<i>``: (1, C, Hkv, hd) with ExecuTorch's LLM
  custom ops, the default, which attend over the filled prefix; (1, Hkv, C, hd) with plain ops) shared by
  every method (``MemoryPlanningPass(share_mutable_buffers=True)``): K/V written by one member are
  read by the next, so a runner switches member between tokens without re-prefilling;
* the weights once: every FFN is blocked (exporters/blocked.py) and a member with granularity g
  in layer l sums the first g blocks; ExecuTorch deduplicates the shared tensors by content;
* the LLM runner's constant methods (``get_max_seq_len``, ``get_bos_id``, ``use_kv_cache``, ...);
  the member names are the method names (and, cheapest first, in the metadata JSON).

The cache is written at ``input_pos + arange(T)`` before attention, and each query t attends to
slots ``<= input_pos + t``: prefill (T = prompt), decode (T = 1) and a speculative verifier's
multi-token call (T = k + 1) are the same method.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from exporters.blocked import BlockedFFN, blocked_model, blocks_for, envelope
from exporters.decoding import MASK_VALUE, KVCore
from exporters.llm_forward import OPS, llama_attention, llama_start, load_llama_ops

SUFFIX = ".pte"
DEFAULT_METHOD = "forward"


def method_name(member: str) -> str:
    """The program method of a member: ``forward_<member>``."""
    return f"{DEFAULT_METHOD}_{member}"


class SharedCache(nn.Module):
    """The KV cache every member reads and writes: k_<i>, v_<i> of shape (1, Hkv, C, hd)."""

    def __init__(self, n_layers: int, shape: tuple[int, ...]):
        super().__init__()
        for i in range(n_layers):
            self.register_buffer(f"k_{i}", torch.zeros(shape))
            self.register_buffer(f"v_{i}", torch.zeros(shape))

    def layer(self, i: int):
        return getattr(self, f"k_{i}"), getattr(self, f"v_{i}")


class ElasticLM(nn.Module):
    """Forward of one member over a blocked (or dense) model and the shared cache.

    ``core`` reuses the static-cache maths of exporters/decoding.py (delegatable RMSNorm, RoPE
    and grouped attention); only the FFN differs per member: ``n_blocks[l]`` blocks of layer l.
    """

    def __init__(self, model, context: int, ops: str = "aten"):
        super().__init__()
        self.core = KVCore(model, context, prefill_len=1)
        self.ops = ops
        c = self.core
        # aten: (1, Hkv, C, hd), heads first as the matmuls want; llama ops: (1, C, Hkv, hd)
        self.cache_shape = (1, c.context, c.n_kv, c.hd) if ops == "llama" else c.cache_shape()
        self.cache = SharedCache(c.n_layers, self.cache_shape)

    def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor, n_blocks: Sequence[int] | None = None):
        """tokens (1, T), input_pos (1,) -> logits (1, T, V); writes cache slots input_pos + [0, T)."""
        core = self.core
        T = tokens.shape[1]
        pos = input_pos + torch.arange(T, dtype=input_pos.dtype)  # (T,) absolute positions
        cos, sin = core.cos.index_select(0, pos), core.sin.index_select(0, pos)  # (T, hd/2)
        x = core.model.tok_emb(tokens)  # (1, T, d)
        if self.ops == "llama":  # attention over the filled prefix only (exporters/llm_forward.py)
            start = llama_start(core, input_pos, T)
        else:
            slots = torch.arange(core.context, dtype=pos.dtype)  # (C,)
            # Query t sees slots <= pos[t]; rows repeated per query head of a KV group: (rep*T, C)
            mask = torch.where(slots.view(1, -1) <= pos.view(-1, 1), 0.0, MASK_VALUE).repeat(core.rep, 1)
        for i, block in enumerate(core.model.layers):
            if self.ops == "llama":
                x = llama_attention(core, block, x, cos, sin, *self.cache.layer(i), start)
            else:
                x = x + self._attend(block, x, i, pos, cos, sin, mask)
            h = core.norm(block.ffn_norm, x)
            x = x + (block.ffn(h, n_blocks[i]) if isinstance(block.ffn, BlockedFFN) else block.ffn(h))
        return core.head(x)

    def _attend(self, block, x, i: int, pos, cos, sin, mask):
        """Plain-ops attention of block i: K/V of x written into the shared cache at ``pos``,
        grouped attention of q (1, Hkv, rep*T, hd) over the cache (1, Hkv, C, hd), then wo."""
        core, T = self.core, x.shape[1]
        q, k, v = core.qkv(block, x, cos, sin)  # q (1, Hkv, rep*T, hd), k/v (1, Hkv, T, hd)
        kc, vc = self.cache.layer(i)
        kc.index_copy_(2, pos, k)  # (1, Hkv, C, hd) <- rows at pos
        vc.index_copy_(2, pos, v)
        G, C, hd = core.n_kv, core.context, core.hd
        att = torch.softmax(torch.bmm(q.reshape(G, core.rep * T, hd), kc.reshape(G, C, hd).transpose(1, 2)) + mask,
                            dim=-1)  # (Hkv, rep*T, C)
        y = torch.bmm(att, vc.reshape(G, C, hd))  # (Hkv, rep*T, hd), row r*T + t
        # (Hkv, rep, T, hd) -> (1, T, H*hd), heads in order j*rep + r as wo expects; not via
        # (1, H, T, hd): that reshape's stride check fails torch.export with a dynamic T.
        y = y.view(G, core.rep, T, hd).permute(2, 0, 1, 3).reshape(1, T, core.n_heads * hd)
        return block.attn.wo(y)


class Member(nn.Module):
    """``forward(tokens, input_pos)`` of one member (what torch.export traces for its method)."""

    def __init__(self, lm: ElasticLM, n_blocks: Sequence[int] | None):
        super().__init__()
        self.lm = lm
        self.n_blocks = list(n_blocks) if n_blocks is not None else None

    def forward(self, tokens, input_pos):
        return self.lm(tokens, input_pos, self.n_blocks)


def elastic_base(model, members: Mapping[str, Sequence[str] | None]) -> tuple[nn.Module, dict]:
    """(frozen base model, {member name: blocks per layer, or None}) shared by every backend.

    A universal model becomes a copy blocked up to the members' envelope; a dense (sliced) model
    with one member ``{name: None}`` (a standalone artifact in the same convention) a frozen copy."""
    cfg = model.config
    if cfg.is_universal:
        specs = [tuple(s) for s in members.values()]
        return blocked_model(model, envelope(specs, cfg)), {n: blocks_for(s, cfg) for n, s in members.items()}
    if len(members) != 1:
        raise ValueError("a dense (sliced) model exports as one member")
    import copy

    return copy.deepcopy(model).eval().requires_grad_(False), {name: None for name in members}


def check_member_names(members: Mapping, default: str | None) -> str:
    """The default member (the last when None); ValueError for names that cannot name a method."""
    names = list(members)
    default = default or names[-1]
    if default not in members:
        raise ValueError(f"default member {default!r} is not one of {names}")
    bad = [n for n in names if not n.isidentifier()]
    if bad:
        raise ValueError(f"member names {bad} are not identifiers (entry points are named after them)")
    return default


def member_metadata(model, members: Mapping, default: str, context: int, precision: str) -> dict:
    """What every backend's elastic metadata says of its members (specs, envelope, default)."""
    cfg = model.config
    return {"format": "matedge.elastic/1", "default": default,
            "members": {n: (",".join(s) if s is not None else None) for n, s in members.items()},
            "envelope": ",".join(envelope([s for s in members.values()], cfg)) if cfg.is_universal else None,
            "context": context, "precision": precision}


def elastic_modules(model, members: Mapping[str, Sequence[str]], context: int,
                    ops: str = "aten") -> tuple[ElasticLM, dict]:
    """(shared ElasticLM, {member name: Member}) over ``elastic_base(model, members)``."""
    if ops not in OPS:
        raise ValueError(f"unknown ops {ops!r} (allowed: {OPS})")
    if ops == "llama":
        load_llama_ops()
    base, blocks = elastic_base(model, members)
    lm = ElasticLM(base, context, ops)
    return lm, {n: Member(lm, b) for n, b in blocks.items()}


class EagerElastic:
    """The elastic graph in torch, the one every elastic artifact is exported from:
    ``run(tokens, pos, member) -> logits (T, V)`` over one shared cache, like the runtime runners.
    The reference for switching tests and for quality figures without an export."""

    def __init__(self, model, members: Mapping[str, Sequence[str]], context: int):
        self.lm, self.mods = elastic_modules(model, members, context)
        self.context, self.members = context, list(members)

    @torch.no_grad()
    def run(self, tokens, pos: int, member: str):
        import numpy as np

        toks = torch.as_tensor(np.asarray(tokens, dtype=np.int64)).view(1, -1)
        return self.mods[member](toks, torch.tensor([pos]))[0].numpy()


def export_elastic(model, members: Mapping[str, Sequence[str] | None], out_path: Path, *, context: int,
                   default: str | None = None, precision: str = "fp32", tokenizer=None, ops: str | None = None) -> dict:
    """Write one ``.pte`` with ``forward`` (= ``default``) and ``forward_<name>`` per member.

    ``members``: name -> spec (one granularity per layer) of a universal model, or one
    ``{name: None}`` for a dense model (a standalone artifact in the same convention).
    ``tokenizer`` (edge.tokenizer.Tokenizer, default the byte tokenizer) gives the BOS/EOS ids
    of the LLM runner's constant methods (exporters.executorch.constant_methods). ``ops``: the
    attention's graph, as for a standalone ``.pte`` (default: exporters.executorch.DEFAULT_OPS).
    Returns metadata: methods, members, the envelope spec, sizes of the cache and inputs."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    from edge.tokenizer import byte_tokenizer
    from exporters.executorch import DEFAULT_OPS, _quantize, backend_config, constant_methods

    names = list(members)
    default = check_member_names(members, default)
    ops = ops or DEFAULT_OPS
    lm, modules = elastic_modules(model, members, context, ops)
    _check_groups(lm, precision)
    _quantize(lm, precision)  # in place on the shared modules: every member sees the same tensors
    T = torch.export.Dim("T", max=context - 1)
    args = (torch.zeros(1, 2, dtype=torch.long), torch.tensor([0], dtype=torch.long))
    dyn = {"tokens": {1: T}, "input_pos": None}
    # A single member is a standalone artifact: `forward` only.
    methods = {DEFAULT_METHOD: default, **({method_name(n): n for n in names} if len(names) > 1 else {})}
    lowered = {m: n for m, n in methods.items() if m != DEFAULT_METHOD or len(names) == 1}
    with torch.no_grad():
        programs = {m: torch.export.export(modules[n], args, dynamic_shapes=dyn, strict=False)
                    for m, n in lowered.items()}
    consts = constant_methods(model.config, context, tokenizer or byte_tokenizer())
    edge = to_edge_transform_and_lower(programs, partitioner=[XnnpackPartitioner()], constant_methods=consts,
                                       # llama::* custom ops are not core ATen: the IR check would refuse them
                                       compile_config=EdgeCompileConfig(_check_ir_validity=ops == "aten"))
    edge = _with_default_alias(edge, methods, consts)
    program = edge.to_executorch(backend_config(precision))
    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    tmp.write_bytes(program.buffer)
    tmp.replace(out_path)
    return {**member_metadata(model, members, default, context, precision), "methods": methods,
            "cache_shape": list(lm.cache_shape), "ops": ops,
            "entry": "forward*(tokens int64 [1, T], input_pos int64 [1]) -> logits float32 [1, T, V]; "
                     "T dynamic in [1, context - 1]; the KV cache is shared by every method"}


def _with_default_alias(edge, methods: dict, consts: dict):
    """``forward`` as a copy of the default member's lowered method instead of a second export:
    lowering dominates the export time (each method's graph passes through some 40 edge and
    XNNPACK passes), so an alias lowered twice cost one member's export."""
    import copy

    from executorch.exir import EdgeProgramManager

    if DEFAULT_METHOD in edge.methods:
        return edge
    programs = {m: edge.exported_program(m) for m in edge.methods}
    programs[DEFAULT_METHOD] = copy.deepcopy(programs[method_name(methods[DEFAULT_METHOD])])
    return EdgeProgramManager(programs, constant_methods=consts, compile_config=edge.compile_config)


def _check_groups(lm: ElasticLM, precision: str) -> None:
    """8da4w quantizes weights in groups of input features: every block's width must be a multiple."""
    from exporters.base import ExportError
    from exporters.executorch import GROUP_SIZE

    if precision != "8da4w":
        return
    widths = {m.in_features for m in lm.modules() if isinstance(m, nn.Linear)}
    bad = sorted(w for w in widths if w % GROUP_SIZE)
    if bad:
        raise ExportError(f"precision 8da4w groups weights by {GROUP_SIZE} input features; FFN blocks of "
                          f"{bad} units are not multiples of {GROUP_SIZE} (use int8 or fp32)")


def load_runner(path: Path, members: Sequence[str] | None = None):
    """The runner of an elastic ``.pte`` (exporters.elastic_runner.ElasticRunner)."""
    from exporters.elastic_runner import ElasticRunner

    return ElasticRunner(path, members)
