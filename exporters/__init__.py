"""Exporters: turn a sliced MatFormer submodel into an artifact a device runs.

One registry, one module per backend (heavy libraries are imported only when that backend is
used). Every artifact has two entry points, ``prefill(tokens[1, T])`` and
``decode(token[1, 1], position[1])``, a static KV cache of ``context`` positions, and a JSON file
beside it (see ``export_model``).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from edge import interrupt
from exporters.backends import BACKENDS, Backend, get_backend
from exporters.base import Artifact, ExportError, file_size, sha256, write_json
from exporters.logs import known_warnings_filtered

# Views of the registry (exporters.backends.BACKENDS) kept for callers that want plain dicts.
EXPORTERS: dict[str, str] = {name: b.module for name, b in BACKENDS.items()}  # name -> module
EXTRAS = {name: b.extra for name, b in BACKENDS.items()}
PRECISIONS = {name: b.precisions for name, b in BACKENDS.items()}  # what each writes, without importing it
DEFAULT_PREFILL = 64

__all__ = ["BACKENDS", "EXPORTERS", "PRECISIONS", "Artifact", "Backend", "ExportError", "get_backend", "get_exporter",
           "export_model", "check_request"]


def get_exporter(name: str):
    """The backend module for ``name``; ExportError for an unknown name or a missing library."""
    return get_backend(name).exporter()


def check_request(backend: str, precision: str, ops: str | None = None) -> None:
    """Reject an unknown backend, or a precision or ops the backend cannot write, before any work."""
    record = get_backend(backend)
    record.check_precision(precision)
    record.check_ops(ops)


def _dense(model, spec):
    """A dense submodel: slice a universal model at ``spec``; a dense model is used as is."""
    from edge.slicing import slice_model
    from edge.spec import parse_spec

    cfg = model.config
    if not cfg.is_universal:
        if spec is not None and tuple(parse_spec(spec, cfg) if isinstance(spec, str) else spec) != tuple(cfg.spec or ()):
            raise ExportError(f"the model is already sliced at {','.join(cfg.spec or ())}; "
                              f"it cannot be exported at spec {spec!r}")
        return model.eval()
    if spec is None:
        spec = cfg.granularity_names[-1]
    # share: the exporters never write into weights; at XL no second copy of the model is made
    return slice_model(model, parse_spec(spec, cfg) if isinstance(spec, str) else tuple(spec), share=True)


def _sizes(model, context, prefill_len, parity: bool) -> tuple[int, int]:
    """Validated (context, prefill_len); parity needs room for its greedy decode steps."""
    from exporters.parity import STEPS

    max_ctx = model.config.max_context
    context = max_ctx if context is None else int(context)
    if not 2 <= context <= max_ctx:
        raise ExportError(f"context {context} is out of range (allowed: 2..{max_ctx}, the model's max_context)")
    room = STEPS if parity else 1
    if prefill_len is None:
        prefill_len = max(1, min(DEFAULT_PREFILL, context // 4, context - room))
    prefill_len = int(prefill_len)
    if not 1 <= prefill_len <= context - room:
        raise ExportError(f"prefill length {prefill_len} is out of range (allowed: 1..{context - room} "
                          f"for context {context}" + (f", leaving {STEPS} decode steps for the parity check)"
                                                      if parity else ")"))
    return context, prefill_len


def _prepare_out(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"output folder {str(out_dir)!r} cannot be created ({e.strerror})") from None
    if not out_dir.is_dir() or not os.access(out_dir, os.W_OK | os.X_OK):
        raise ExportError(f"output folder {str(out_dir)!r} is not writable (choose a folder you can write)")
    return out_dir


def _replace(tmp: Path, final: Path) -> None:
    """Move ``tmp`` (a file or package folder) onto ``final``, replacing what was there."""
    if final.is_dir() and not final.is_symlink():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def export_model(model, backend: str, precision: str, out_dir, *, spec=None, context: int | None = None,
                 prefill_len: int | None = None, name: str = "model", parity: bool = True,
                 val_stream=None, tokenizer=None, ops: str | None = None, calibration=None,
                 smooth: bool = True) -> Artifact:
    """Export ``model`` (dense, or universal + ``spec``) to ``out_dir/<name><suffix>`` + ``<name>.json``,
    with the model's ``tokenizer.json`` + ``tokenizer_config.json`` beside them.

    Beside them: any extra file the backend writes (LiteRT's ``<name>.litertlm``); the JSON
    lists every file (``files``: role -> name, bytes, sha256). Files are written to temporary
    paths and renamed into place only when export (and the parity run, when asked) finished, so
    a failure midway leaves no partial artifact.
    ``val_stream``: validation tokens for parity (default: ``edge.data.load_corpus().val``).
    ``tokenizer``: an ``edge.tokenizer.Tokenizer`` (default: the byte tokenizer of the toy model).
    ``ops``: a graph variant of the backend (``Backend.ops``; None: its default).
    ``calibration``: text tokens (1-D, not the parity text) for the activation smoothing of
    dynamic int8 precisions (exporters/smoothing.py; default: the default corpus's training split).
    ``smooth=False`` skips that smoothing (timing-only exports: it adds no op and changes no shape).
    """
    from edge.tokenizer import TOKENIZER_CONFIG, TOKENIZER_JSON
    from exporters import smoothing

    check_request(backend, precision, ops)
    module = get_exporter(backend)
    dense = _dense(model, spec)
    module.check(dense, precision)
    tokenizer = _tokenizer(tokenizer, dense)
    context, prefill_len = _sizes(dense, context, prefill_len, parity)
    out_dir = _prepare_out(out_dir)
    final = out_dir / f"{name}{module.SUFFIX}"
    tmp = out_dir / f".{name}.tmp-{os.getpid()}{module.SUFFIX}"
    extras: dict[str, Path] = {}
    interrupt.track(tmp)  # removed by the CLI even if a signal arrives inside a converter
    t0 = time.perf_counter()
    try:
        variant = {} if ops is None else {"ops": ops}
        # smoothing changes `dense` in place, exactly and only inside: parity below sees the original
        with known_warnings_filtered(), smoothing.for_export(dense, backend, precision, calibration, tokenizer, smooth) as sm:
            info = module.export(dense, precision, tmp, context=context, prefill_len=prefill_len, tokenizer=tokenizer,
                                 **variant)
        extras = info.pop("extra_files", {})
        if sm is not None:
            info["smoothing"] = sm
        seconds = time.perf_counter() - t0
        meta = _metadata(dense, backend, precision, tmp, info, context, prefill_len, seconds)
        meta["tokenizer"] = write_tokenizer(tokenizer, out_dir)
        if parity:
            meta["parity"] = run_parity(module, tmp, meta, dense, precision, prefill_len, val_stream)
        interrupt.check()  # a signal swallowed by a converter still stops here, before the rename
        files = {"model": final}
        for role, path in extras.items():
            files[role] = out_dir / f"{name}{Path(path).suffix}"
            _replace(Path(path), files[role])
        _replace(tmp, final)
    except BaseException:
        for path in (tmp, *extras.values()):
            _remove(Path(path))
        raise
    finally:
        interrupt.untrack(tmp)
    files.update(tokenizer=out_dir / TOKENIZER_JSON, tokenizer_config=out_dir / TOKENIZER_CONFIG)
    meta["file"] = final.name
    meta["files"] = {role: {"file": p.name, "bytes": file_size(p), "sha256": sha256(p)} for role, p in files.items()}
    meta_path = out_dir / f"{name}.json"
    write_json(meta_path, meta)
    return Artifact(path=final, meta_path=meta_path, meta=meta)


def _tokenizer(tokenizer, dense):
    """The given tokenizer, or the byte tokenizer for a model with its 260-id vocabulary."""
    from edge.tokenizer import byte_tokenizer

    if tokenizer is None:
        tokenizer = byte_tokenizer()
        if dense.config.vocab_size != tokenizer.vocab_size:
            raise ExportError(f"the model has {dense.config.vocab_size} token ids, not the byte tokenizer's "
                              f"{tokenizer.vocab_size}: pass its checkpoint's tokenizer")
    if tokenizer.vocab_size > dense.config.vocab_size:
        raise ExportError(f"the tokenizer has {tokenizer.vocab_size} ids but the model only {dense.config.vocab_size}")
    return tokenizer


def write_tokenizer(tokenizer, out_dir: Path) -> dict:
    """Write ``tokenizer.json`` + ``tokenizer_config.json`` into ``out_dir`` (each through a temporary
    file); return the tokenizer's metadata with each file's sha256. A different tokenizer already
    there is an error, not overwritten: it belongs to other artifacts in that folder."""
    tmp = Path(out_dir) / f".tokenizer.tmp-{os.getpid()}"
    tmp.mkdir(exist_ok=True)
    try:
        files = {}
        for path in tokenizer.save(tmp):
            final = Path(out_dir) / path.name
            if final.exists() and sha256(final) != sha256(path):
                raise ExportError(f"{str(final)!r} holds a different tokenizer (another model's?): "
                                  f"export into another folder")
            files[path.name] = sha256(path)
            os.replace(path, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**tokenizer.describe(), "files": files}


def run_parity(module, path: Path, meta: dict, dense, precision: str, prefill_len: int, val_stream=None) -> dict:
    """Eager vs artifact on real validation text (see exporters.parity)."""
    from exporters import parity

    prompt = parity.prompt_tokens(prefill_len, val_stream)
    ref = parity.reference(dense, prompt)
    runner = module.load_runner(path, meta)
    result = parity.check(runner, ref, precision)
    result["kind"] = getattr(runner, "kind", "runtime")  # a graph-level evaluator says so itself
    return result


def _metadata(dense, backend, precision, path, info, context, prefill_len, seconds) -> dict:
    from edge.spec import format_spec, param_count

    cfg = dense.config
    return {
        "backend": backend, "precision": precision,
        "spec": format_spec(tuple(cfg.spec)) if cfg.spec else None,
        "ffn_sizes": list(cfg.layer_ffn_sizes()), "parameters": param_count(None, cfg),
        "file_size": file_size(path), "sha256": sha256(path),
        "context": context, "prefill_len": prefill_len,
        "entry_points": info.pop("entry_points"), "cache": info.pop("cache"),
        "model_config": cfg.to_dict(),
        "libraries": info.pop("libraries"), "export_seconds": round(seconds, 2),
        **info,
    }
