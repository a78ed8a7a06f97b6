"""What every backend shares: the error type, the artifact record, lazy imports, metadata helpers.

A backend is a record in ``exporters.backends.BACKENDS`` (name, suffix, precisions, extra,
runner, ...) plus a module (exporters/executorch.py, ...) that exposes:

    BACKEND: Backend                  its registry record (PRECISIONS, SUFFIX, EXTRA repeat its fields)
    CACHE: str                        its KV-cache strategy ("buffers" or "io"), see decoding.py
    check(model, precision) -> None   raise ExportError for a model it cannot write, before any work
    export(model, precision, out_path, *, context, prefill_len, tokenizer) -> dict
                                      (entry points, ...; "extra_files": {role: path} written
                                      beside out_path, which export_model renames with it)
    load_runner(path, meta) -> Runner  (prefill/decode on the real runtime) or raise ExportError
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Protocol

import numpy as np

from edge.errors import MatEdgeError


class ExportError(MatEdgeError):
    """An export cannot be done as asked (unknown backend/precision, missing library, bad spec)."""


@dataclass
class Artifact:
    """An exported file (or .mlpackage folder) and the JSON metadata written beside it."""
    path: Path
    meta_path: Path
    meta: dict = field(default_factory=dict)


class Runner(Protocol):
    """Runs an artifact's two entry points; keeps any explicit KV cache between calls."""

    label: str  # what executed it, e.g. "executorch.runtime (XNNPACK)"

    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        """tokens (1, T) -> logits (1, T, V) float32."""

    def decode(self, token: int, position: int) -> np.ndarray:
        """One token at ``position`` -> logits (1, 1, V) float32."""


def separate_head(lm) -> None:
    """Give a tied MatFormerLM an LM head of its own: an ``nn.Linear`` holding a copy of the
    table (V, d), frozen. Quantized ``.pte`` files and the int8 smoothing store the head apart."""
    from torch import nn

    table = lm.tok_emb.weight  # (V, d): the layout of an nn.Linear(d, V) weight
    lm.lm_head = nn.Linear(table.shape[1], table.shape[0], bias=False)
    lm.lm_head.weight = nn.Parameter(table.detach().clone(), requires_grad=False)


def require(module: str, extra: str, what: str):
    """Import ``module`` or raise ExportError naming the pip extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ExportError(f"{what} needs the Python package {e.name or module!r}, which is not "
                          f"installed: pip install 'matformer-edge[{extra}]'") from None


def library_versions(*dists: str) -> dict[str, str]:
    """Installed versions of the given distributions (missing ones are left out)."""
    out = {}
    for d in ("torch", "numpy", *dists):
        try:
            out[d] = importlib_metadata.version(d)
        except importlib_metadata.PackageNotFoundError:
            pass
    return out


def artifact_files(path: Path) -> list[Path]:
    """The file itself, or every file of a package folder in a stable order."""
    path = Path(path)
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def file_size(path: Path) -> int:
    """Bytes of a file, or of all files under a package folder."""
    return sum(p.stat().st_size for p in artifact_files(path))


def sha256(path: Path) -> str:
    """sha256 of a file; for a folder, of each file's relative path and content in order."""
    path = Path(path)
    h = hashlib.sha256()
    for p in artifact_files(path):
        if path.is_dir():
            h.update(p.relative_to(path).as_posix().encode() + b"\0")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def tensor_spec(name: str, shape, dtype) -> dict:
    """One input/output of an entry point as it appears in the metadata JSON."""
    return {"name": name, "shape": [int(s) for s in shape], "dtype": str(dtype).replace("torch.", "")}


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically (temporary sibling, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)
