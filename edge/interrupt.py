"""SIGINT and SIGTERM: stop the command promptly and leave no temporary file behind.

``handling()`` (entered once by the CLI) turns both signals into ``Interrupted``, a
``KeyboardInterrupt``, so every ``finally`` and ``except BaseException`` on the way up removes
what it was writing. Two things make that reliable:

- temporaries are registered (``track``/``untrack``, ``temp_dir``) and removed again by
  ``cleanup()`` at the top, whatever an inner handler did with the exception;
- a watchdog thread wakes on the signal itself (``signal.set_wakeup_fd``, so also while the main
  thread sits in native code that cannot run Python handlers) and, if the command has not
  stopped within ``GRACE_S``, removes the registered temporaries and exits with 128 + signal.
  A signal swallowed by a library callback therefore cannot make the command run to its end;
  ``check()`` re-raises it at the next safe point (before an output is renamed into place).

Exit codes follow the shell's convention: 130 for SIGINT, 143 for SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

GRACE_S = 10.0  # a native write of a large file can take seconds on a loaded machine
SIGNALS = (signal.SIGINT, signal.SIGTERM)

_tracked: set[Path] = set()
_received: list[int] = []  # signal numbers, in order
_done = threading.Event()  # set when handling() ends: the watchdog then stands down
_critical = threading.RLock()  # held while an output is swapped into place: the watchdog waits for it
_prefix = "matedge"
_deferring = 0  # > 0 inside deferred(): a signal is recorded, raised when the section ends


class Interrupted(KeyboardInterrupt):
    """The command was stopped by a signal; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_code(signum: int) -> int:
    return 128 + int(signum)


def received() -> int | None:
    """The first signal received while handling, else None."""
    return _received[0] if _received else None


def check() -> None:
    """Raise ``Interrupted`` if a signal arrived (and was perhaps swallowed on its way up)."""
    if _received:
        raise Interrupted(_received[0])


def track(path: Path) -> None:
    _tracked.add(Path(path))


def untrack(path: Path) -> None:
    _tracked.discard(Path(path))


def cleanup() -> list[Path]:
    """Remove every registered temporary that still exists; returns what was removed."""
    removed = []
    for p in sorted(_tracked, key=lambda p: len(p.parts), reverse=True):
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists() or p.is_symlink():
                p.unlink()
            removed.append(p)
        except OSError:
            pass
    _tracked.clear()
    return removed


@contextmanager
def critical() -> Iterator[None]:
    """A section the watchdog must not cut in half (renaming an output into place)."""
    with _critical:
        yield


@contextmanager
def deferred() -> Iterator[None]:
    """A few statements a signal must not split (create a temporary, then register it).

    Blocking the signal is not enough: the kernel then hands it to another thread, whose C handler
    flags it, and Python runs ``_handler`` in the main thread at the next bytecode, perhaps still
    inside ``tempfile.mkdtemp``. Here ``_handler`` only records it, and it is raised on leaving.
    """
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    if not _deferring:
        check()


def make_temp_dir(prefix: str, dir: str | Path | None = None) -> Path:
    """mkdtemp, registered before a signal can land between creating and registering it."""
    with deferred():
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=dir))
        track(path)
    return path


@contextmanager
def temp_dir(prefix: str, dir: str | Path | None = None) -> Iterator[Path]:
    """A registered temporary folder, removed on exit (normal, exception or signal)."""
    path = make_temp_dir(prefix, dir)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        untrack(path)


def _handler(signum, frame) -> None:
    if _received:  # a second signal: the user means it
        _hard_exit(_received[0])
    _received.append(signum)
    if not _deferring:  # else raised when the deferred section ends
        raise Interrupted(signum)


def _hard_exit(signum: int) -> None:
    with _critical:
        # The main thread may still be writing (native code): remove until nothing is left.
        paths = list(_tracked)
        for _ in range(20):
            cleanup()
            if not any(p.exists() for p in paths):
                break
            _tracked.update(paths)
            time.sleep(0.05)
        print(f"{_prefix}: interrupted by {signal.Signals(signum).name}; temporary files removed", file=sys.stderr)
        sys.stderr.flush()
        os._exit(exit_code(signum))


def _watchdog(read_fd: int) -> None:
    """Wait for a signal byte on the wakeup pipe; give the main thread GRACE_S to stop."""
    try:
        data = os.read(read_fd, 16)
    except OSError:
        return
    if not data:
        return  # the pipe was closed: handling() ended normally
    signum = data[0]
    if not _done.wait(GRACE_S):
        _hard_exit(signum if signum in SIGNALS else signal.SIGTERM)
    os.close(read_fd)


@contextmanager
def handling(prefix: str = "matedge") -> Iterator[None]:
    """Install the handlers (main thread only; elsewhere this does nothing) and restore them after."""
    global _prefix
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _prefix = prefix
    _received.clear()
    _done.clear()
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    old_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    watcher = threading.Thread(target=_watchdog, args=(read_fd,), daemon=True, name="matedge-interrupt")
    watcher.start()
    for s in SIGNALS:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        _done.set()
        for s, h in previous.items():
            signal.signal(s, h)
        signal.set_wakeup_fd(old_fd)
        os.close(write_fd)  # the watcher reads EOF (or sees _done) and ends
        watcher.join(timeout=1.0)
        if not _received:
            os.close(read_fd)
