"""Checkpoints on disk: a folder with ``model.safetensors``, ``config.json``, ``meta.json`` and
the model's tokenizer (``tokenizer.json`` + ``tokenizer_config.json``, see edge/tokenizer.py).

Writes go to a temporary sibling folder that is renamed into place, so a crash never leaves a
half-written checkpoint. Loading never unpickles: weights come from safetensors.
"""

from __future__ import annotations

from edge.errors import MatEdgeError

import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from edge import fsguard, inputs
from edge.config import DEFAULT_CHECKPOINT, ConfigError, MatFormerConfig, default_checkpoint  # noqa: F401 (re-exported)
from edge.model import MatFormerLM
from edge.tokenizer import Tokenizer, byte_tokenizer, load_tokenizer  # load_tokenizer: re-exported

WEIGHTS, CONFIG, META = "model.safetensors", "config.json", "meta.json"


class CheckpointError(MatEdgeError):
    """A checkpoint is missing, incomplete or corrupt."""


def atomic_dir(final: Path, kind: str = "checkpoint", force: bool = False):
    """A temporary folder next to ``final`` that replaces it on success (see edge.fsguard:
    only a folder this tool wrote is ever replaced, unless ``force``)."""
    return fsguard.atomic_dir(final, kind=kind, force=force)


def write_model(model: MatFormerLM, folder: Path, meta: dict | None = None,
                tokenizer: Tokenizer | None = None) -> None:
    """Write weights, config, meta and tokenizer into an existing folder (no atomicity: see
    save_model). ``tokenizer`` None means the byte tokenizer, which only fits its 260-id vocabulary."""
    folder = Path(folder)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    try:
        save_file(state, str(folder / WEIGHTS))
    except SafetensorError as e:  # its I/O errors (disk full, ...) are not OSErrors
        raise CheckpointError(f"cannot write {str(folder / WEIGHTS)!r}: {' '.join(str(e).split())}") from None
    model.config.save(folder / CONFIG)
    (folder / META).write_text(json.dumps(meta or {}, indent=2) + "\n")
    if tokenizer is None:
        tokenizer = byte_tokenizer()
    if tokenizer.vocab_size > model.config.vocab_size:
        raise CheckpointError(f"tokenizer has {tokenizer.vocab_size} ids but the model only "
                              f"{model.config.vocab_size} (vocab_size in {CONFIG})")
    tokenizer.save(folder)


def save_model(model: MatFormerLM, folder: Path, meta: dict | None = None,
               tokenizer: Tokenizer | None = None, force: bool = False) -> Path:
    """Atomically save ``model`` (with ``meta`` and its ``tokenizer``) as a checkpoint folder
    (see atomic_dir: only a folder matedge wrote is replaced, unless ``force``)."""
    with atomic_dir(folder, force=force) as tmp:
        write_model(model, tmp, meta, tokenizer)
    return Path(folder)


def load_config(folder: Path) -> MatFormerConfig:
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint {str(folder)!r} not found (expected a folder with "
                              f"{WEIGHTS} and {CONFIG}; train one with `matedge train`)")
    if not (folder / CONFIG).exists():
        raise CheckpointError(f"checkpoint {str(folder)!r} has no {CONFIG}")
    try:
        return MatFormerConfig.load(folder / CONFIG)  # inputs.read_json + from_dict
    except MatEdgeError as e:
        raise CheckpointError(f"checkpoint {str(folder)!r}: corrupt {CONFIG}: {e}") from None


# meta.json fields that other code reads, and the type each must have (others are provenance).
META_TYPES = {"train_args": dict, "history": list, "step": int, "train_seconds": (int, float), "spec": str,
              "source_meta": dict, "preset": str}


def load_meta(folder: Path) -> dict:
    """meta.json as a dict ({} when absent); CheckpointError when it is unreadable or mistyped."""
    path = Path(folder) / META
    if not path.exists() and not path.is_symlink():
        return {}
    try:
        meta = inputs.read_json(path, "checkpoint meta")
    except MatEdgeError as e:
        raise CheckpointError(str(e)) from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: top level is {type(meta).__name__} (allowed: a JSON object)")
    bad = [f"{k} = {str(meta[k])[:40]!r}" for k, t in META_TYPES.items()
           if k in meta and (not isinstance(meta[k], t) or isinstance(meta[k], bool))]
    data = meta.get("train_args", {}).get("data") if isinstance(meta.get("train_args"), dict) else None
    if data is not None and not isinstance(data, str):
        bad.append(f"train_args.data = {data!r}")
    if bad:
        expected = ", ".join(f"{k} {_type_name(t)}" for k, t in META_TYPES.items())
        raise CheckpointError(f"{path}: wrong type for {', '.join(bad)} (expected: {expected}, train_args.data str)")
    return meta


def _type_name(t) -> str:
    return "/".join(x.__name__ for x in t) if isinstance(t, tuple) else t.__name__


def load_model(folder: Path) -> MatFormerLM:
    """Load a checkpoint folder; raise CheckpointError naming what is wrong."""
    folder = Path(folder)
    config = load_config(folder)
    weights = folder / WEIGHTS
    if weights.exists() and not weights.is_file():  # a folder or FIFO there: mmap would fail or block
        raise CheckpointError(f"checkpoint {str(folder)!r}: {WEIGHTS} is not a regular file")
    try:
        state = load_file(str(weights))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {str(folder)!r} has no {WEIGHTS}") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {str(folder)!r}: corrupt {WEIGHTS} ({e})") from None
    model = MatFormerLM(config)
    expected = model.state_dict()
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    bad = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or extra or bad:
        raise CheckpointError(f"checkpoint {str(folder)!r}: weights do not match {CONFIG} "
                              f"(missing {missing[:3]}, unexpected {extra[:3]}, wrong shape {bad[:3]})")
    model.load_state_dict(state)
    return model.eval()


def load_any(folder: Path | None) -> tuple[MatFormerLM, Path]:
    """Load ``folder``, or the default model when None."""
    default = default_checkpoint()
    folder = Path(folder) if folder is not None else default
    if not folder.exists() and folder == default:
        raise CheckpointError(f"no default model at {str(folder)!r}: run "
                              f"`matedge train --out {folder}` first, or pass a CHECKPOINT (`make demo` "
                              f"writes runs/smollm2-mat)")
    return load_model(folder), folder



def load_corpus_for(folder: Path, max_bytes: int | None = None):
    """The text a checkpoint was trained on (its ``train_args.data``, else the default corpus),
    tokenized with the checkpoint's own tokenizer; validation documents are held out."""
    from edge.data import load_corpus

    data = load_meta(folder).get("train_args", {}).get("data")
    return load_corpus(Path(data) if data else None, max_bytes, load_tokenizer(folder))
