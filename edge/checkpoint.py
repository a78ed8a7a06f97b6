"""Checkpoints on disk: a folder with ``model.safetensors``, ``config.json``, ``meta.json`` and
the model's tokenizer (``tokenizer.json`` + ``tokenizer_config.json``, see edge/tokenizer.py).

Writes go to a temporary sibling folder that is renamed into place, so a crash never leaves a
half-written checkpoint. Loading never unpickles: weights come from safetensors.
"""

from __future__ import annotations

from edge.errors import MatEdgeError

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from edge.config import DEFAULT_CHECKPOINT, ConfigError, MatFormerConfig, default_checkpoint  # noqa: F401 (re-exported)
from edge.model import MatFormerLM
from edge.tokenizer import Tokenizer, byte_tokenizer, load_tokenizer  # load_tokenizer: re-exported

WEIGHTS, CONFIG, META = "model.safetensors", "config.json", "meta.json"


class CheckpointError(MatEdgeError):
    """A checkpoint is missing, incomplete or corrupt."""


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``final``; on success replace ``final`` with it."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result should look like any folder
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old)
        else:
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_model(model: MatFormerLM, folder: Path, meta: dict | None = None,
                tokenizer: Tokenizer | None = None) -> None:
    """Write weights, config, meta and tokenizer into an existing folder (no atomicity: see
    save_model). ``tokenizer`` None means the byte tokenizer, which only fits its 260-id vocabulary."""
    folder = Path(folder)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS))
    model.config.save(folder / CONFIG)
    (folder / META).write_text(json.dumps(meta or {}, indent=2) + "\n")
    if tokenizer is None:
        tokenizer = byte_tokenizer()
    if tokenizer.vocab_size > model.config.vocab_size:
        raise CheckpointError(f"tokenizer has {tokenizer.vocab_size} ids but the model only "
                              f"{model.config.vocab_size} (vocab_size in {CONFIG})")
    tokenizer.save(folder)


def save_model(model: MatFormerLM, folder: Path, meta: dict | None = None,
               tokenizer: Tokenizer | None = None) -> Path:
    """Atomically save ``model`` (with ``meta`` and its ``tokenizer``) as a checkpoint folder."""
    with atomic_dir(folder) as tmp:
        write_model(model, tmp, meta, tokenizer)
    return Path(folder)


def load_config(folder: Path) -> MatFormerConfig:
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint {str(folder)!r} not found (expected a folder with "
                              f"{WEIGHTS} and {CONFIG}; train one with `matedge train`)")
    try:
        return MatFormerConfig.load(folder / CONFIG)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {str(folder)!r} has no {CONFIG}") from None
    except (json.JSONDecodeError, ConfigError, TypeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint {str(folder)!r}: corrupt {CONFIG}: {e}") from None


def load_meta(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / META).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def load_model(folder: Path) -> MatFormerLM:
    """Load a checkpoint folder; raise CheckpointError naming what is wrong."""
    folder = Path(folder)
    config = load_config(folder)
    try:
        state = load_file(str(folder / WEIGHTS))
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
        raise CheckpointError(f"no default model at {str(folder)!r}: run `make demo` or "
                              f"`matedge train --out {folder}` first, or pass a CHECKPOINT")
    return load_model(folder), folder



def load_corpus_for(folder: Path, max_bytes: int | None = None):
    """The text a checkpoint was trained on (its ``train_args.data``, else the default corpus),
    tokenized with the checkpoint's own tokenizer; validation documents are held out."""
    from edge.data import load_corpus

    data = load_meta(folder).get("train_args", {}).get("data")
    return load_corpus(Path(data) if data else None, max_bytes, load_tokenizer(folder))
