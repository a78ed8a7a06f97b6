"""Destinations the tool may replace: only what it wrote itself, never half-written.

Every folder the tool writes (a checkpoint, a sliced model, ``build/<device>/``, a cached export)
carries a marker file, ``.matedge``. A destination that already exists is replaced only when it
is recognisably the tool's own: it holds the marker, or a manifest the tool writes, or it is an
empty folder. Anything else (a user's folder, a file where a folder is expected) is refused with
one line that names it and suggests ``--force``. Writes go to a temporary sibling that is
renamed into place; temporaries are registered with ``edge.interrupt`` so that an interrupted
command removes them.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from edge import interrupt
from edge.errors import MatEdgeError

MARKER = ".matedge"
# Files that prove a folder is the tool's even without the marker (written before it existed).
MANIFESTS = ("manifest.json",)
# A folder holding nothing but these (a checkpoint written before the marker existed) is the
# tool's too: replacing it loses nothing the tool did not write.
CHECKPOINT_FILES = frozenset({"model.safetensors", "config.json", "meta.json", "train_state.pt"})


class DestinationError(MatEdgeError):
    """A destination exists and is not the tool's to replace (or is the wrong kind of thing)."""


def owns_dir(path: Path) -> bool:
    """True when ``path`` is a folder this tool wrote (marker or manifest), or an empty folder."""
    path = Path(path)
    if not path.is_dir() or path.is_symlink():
        return False
    if (path / MARKER).is_file():
        return True
    if any(_is_manifest(path / m) for m in MANIFESTS):
        return True
    names = {p.name for p in path.iterdir()}
    return names <= CHECKPOINT_FILES and (not names or "config.json" in names)


def _is_manifest(p: Path) -> bool:
    try:
        data = json.loads(p.read_text()) if p.is_file() and p.stat().st_size < 2**24 else None
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and str(data.get("schema", "")).startswith("matedge.")


def check_dir_destination(path: str | Path, force: bool = False, what: str = "--out") -> Path:
    """Refuse (DestinationError) a folder destination that exists and is not the tool's.

    ``force`` allows replacing a foreign folder; a file where a folder is expected is always
    refused (replacing a file with a folder is never what the user meant).
    """
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise DestinationError(f"{what} {str(path)!r} exists and is not a folder (allowed: a new path or a "
                               f"folder written by matedge)")
    if path.exists() and not force and not owns_dir(path):
        raise DestinationError(f"{what} {str(path)!r} exists and was not written by matedge; choose another "
                               f"path, or pass --force to replace it")
    return path


def check_file_destination(path: str | Path, owned: Callable[[Path], bool], force: bool = False,
                           what: str = "--out") -> Path:
    """Refuse a file destination that exists and is not recognised by ``owned`` (unless ``force``)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise DestinationError(f"{what} {str(path)!r} is a folder (allowed: a file path)")
    if path.exists() and not path.is_file():
        raise DestinationError(f"{what} {str(path)!r} is not a regular file (allowed: a file path)")
    if path.exists() and not force and not owned(path):
        raise DestinationError(f"{what} {str(path)!r} exists and was not written by matedge; choose another "
                               f"path, or pass --force to replace it")
    return path


def write_marker(folder: Path, kind: str) -> None:
    (Path(folder) / MARKER).write_text(json.dumps({"tool": "matformer-edge", "kind": kind}) + "\n")


@contextmanager
def atomic_dir(final: str | Path, kind: str = "folder", force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``final``; on success replace ``final`` with it.

    The destination is checked before any work and again before the swap; the folder written
    carries the marker (kind: checkpoint, build, cache, ...).
    """
    final = Path(final)
    check_dir_destination(final, force)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = interrupt.make_temp_dir(f".{final.name}.tmp-", final.parent)  # registered atomically
    umask = os.umask(0)
    os.umask(umask)
    try:
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result should look like any folder
        yield tmp
        write_marker(tmp, kind)
        interrupt.check()  # a signal swallowed inside a library callback still stops the command here
        check_dir_destination(final, force)
        with interrupt.critical():  # the watchdog's hard exit waits: never between the two renames
            _swap(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        interrupt.untrack(tmp)


def _swap(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` onto ``final``; an existing ``final`` is moved aside first, then removed."""
    if not final.exists():
        tmp.rename(final)
        return
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    interrupt.track(old)
    try:
        final.rename(old)
        try:
            tmp.rename(final)
        except BaseException:
            old.rename(final)  # put the previous version back
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        interrupt.untrack(old)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to a temporary sibling, then rename it onto ``path`` (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    interrupt.track(tmp)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        interrupt.untrack(tmp)
    return path
