"""Run an elastic ``.pte`` (exporters/elastic.py) on ``executorch.runtime``, switching members.

Every member is a forward-style method ``forward_<name>(tokens [1, T], input_pos [1])`` over one
KV cache held inside the program, so switching member between tokens is just calling another
method at the next position: the new member reads the K/V the previous ones wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from exporters.base import ExportError, require
from exporters.elastic import DEFAULT_METHOD, method_name
from exporters.logs import runtime_logs_hidden


class ElasticRunner:
    """Loads each member's method on first use; ``run`` runs T tokens at ``pos`` as ``member``."""

    label = "executorch.runtime (XNNPACK delegate), elastic"

    def __init__(self, path: Path, members: Sequence[str] | None = None):
        require("executorch.runtime", "executorch", "running a .pte")
        from executorch.runtime import Runtime

        from exporters.executorch import load_kernels
        from exporters.llm_forward import load_llama_ops

        load_kernels()  # int8 members look their embedding up with a quantized kernel
        load_llama_ops()  # the LLM custom ops' kernels, for a program exported with them (the default)
        self.path = Path(path)
        self.program = Runtime.get().load_program(self.path)
        names = set(self.program.method_names)
        found = sorted(n[len(DEFAULT_METHOD) + 1:] for n in names if n.startswith(DEFAULT_METHOD + "_"))
        self.members = list(members) if members is not None else found  # cheapest first when given
        missing = [m for m in self.members if method_name(m) not in names]
        if missing:
            raise ExportError(f"{self.path}: no method for member(s) {missing} (has: {', '.join(found)})")
        self.context = int(self.program.load_method("get_max_context_len").execute([])[0])  # cache slots
        self._methods: dict[str, object] = {}
        self.member = self.members[-1] if self.members else None

    def method(self, member: str | None):
        """The loaded method of ``member`` (None: ``forward``, the default member)."""
        name = DEFAULT_METHOD if member is None else method_name(member)
        if name not in self._methods:
            with runtime_logs_hidden():  # XNNPACK's first load prints cpuinfo probing lines
                self._methods[name] = self.program.load_method(name)
        return self._methods[name]

    def run(self, tokens: Sequence[int] | np.ndarray, pos: int, member: str | None = None) -> np.ndarray:
        """Run tokens at positions pos..pos+T-1 as ``member`` -> logits of every one (T, V);
        writes those cache slots (None: the current member, ``self.member``)."""
        import torch

        toks = torch.as_tensor(np.asarray(tokens, dtype=np.int64).reshape(1, -1))
        if pos < 0 or pos + toks.shape[1] > self.context:
            raise ExportError(f"{toks.shape[1]} tokens at position {pos} do not fit the context {self.context}")
        out = self.method(member if member is not None else self.member).execute(
            [toks, torch.tensor([pos], dtype=torch.int64)])
        return out[0].numpy()[0]

    def forward(self, tokens: np.ndarray, input_pos: int) -> np.ndarray:
        """The LLM-runner call on the current member: tokens (1, T) -> logits (1, V) of the last."""
        return self.run(tokens, input_pos)[-1:]

    # The two-entry-point Runner protocol (exporters/base.py), on the current member.
    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        """tokens (1, T) -> logits (1, T, V) from position 0."""
        return self.run(np.asarray(tokens).reshape(-1), 0)[None]

    def decode(self, token: int, position: int) -> np.ndarray:
        """One token at ``position`` -> logits (1, 1, V)."""
        return self.run([token], position)[None]
