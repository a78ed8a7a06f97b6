"""Where third-party output goes: converter chatter to a log file, known warnings filtered.

A build prints the project's progress and results; what the converters print (torch.export,
ExecuTorch, litert-torch, coremltools: native logs, warnings, notices) goes to a log file under
``build/logs/``. Warnings every export raises and a user cannot act on are filtered at the
source, each by its exact message, so nothing else (a real error) is hidden.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

# (category, message regex) of warnings every export raises, with why each is harmless here.
KNOWN_WARNINGS = (
    # torch.export's own pytree code uses the deprecated LeafSpec (torch 2.13); nothing to change on our side
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    # ExecuTorch: the KV cache is a mutable buffer whose initial values do not matter (prefill
    # writes every slot a query can read)
    (UserWarning, r"Mutation on a buffer in the model is detected"),
    # ExecuTorch's LLM custom ops (custom_ops.py) still call torch._check_is_size, which torch 2.13
    # deprecates with a warning per traced call (one per layer per method)
    (FutureWarning, r"_check_is_size will be removed in a future PyTorch release"),
)


# (logger, message regex) of log records the backend libraries emit on import, with why.
KNOWN_LOG_RECORDS = (
    # torchao tries its optional CUDA kernels (_C_mxfp8, _C_cutlass_90a) on every import; CPU
    # export never uses them
    ("torchao", r"Failed to load .*torchao/_C\w*\.(abi3\.)?(cpython-\d+-\S+\.)?so"),
    # torchao registers an Enum as a pytree constant; torch 2.13 logs a deprecation for it
    ("torch.utils._pytree", r".* is an Enum subclass and is now natively supported by torch\.compile"),
)


class _DropKnown(logging.Filter):
    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


def install_log_filters() -> None:
    """Drop exactly the KNOWN_LOG_RECORDS (idempotent); every other record is kept."""
    for name, pattern in KNOWN_LOG_RECORDS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnown) and f.pattern.pattern == pattern for f in logger.filters):
            logger.addFilter(_DropKnown(pattern))


@contextmanager
def known_warnings_filtered():
    """Ignore exactly the KNOWN_WARNINGS inside the block; every other warning is shown."""
    with warnings.catch_warnings():
        for category, message in KNOWN_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield


def _name_log(e: Exception, kind: str, log_path: Path) -> None:
    """Append ``(kind log: path)`` to an error's message, so the user can read what was hidden."""
    e.args = (f"{e.args[0] if e.args else e} ({kind} log: {log_path})", *e.args[1:])


@contextmanager
def _descriptors_to(log_path: Path, fds: tuple[int, ...], kind: str, mode: str = "w", name_it: bool = True):
    """File descriptors ``fds`` write to ``log_path`` inside the block (native code included) and
    are restored after it; an Exception raised in the block names the log (``kind`` log: path)
    unless ``name_it`` is False."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(fd) for fd in fds]
    with open(log_path, mode) as log:
        for fd in fds:
            os.dup2(log.fileno(), fd)
        try:
            yield
        except Exception as e:
            if name_it:
                _name_log(e, kind, log_path)
            raise
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            for fd, copy in zip(fds, saved):
                os.dup2(copy, fd)
                os.close(copy)


@contextmanager
def quiet_output(log_path: Path, mode: str = "w"):
    """Send the converters' chatter (native logs, Python warnings, progress bars) to ``log_path``
    instead of the terminal (file descriptors 1 and 2, so native code is caught too); on failure
    the log is kept and named in the error so the user can read it. ``mode="a"`` appends."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with _descriptors_to(log_path, (1, 2), "converter", mode):
        yield


@contextmanager
def runtime_logs_hidden(show: bool = False, fds: tuple[int, ...] = (2,), kind: str = "runtime"):
    """Hide what a runtime's native code prints to stderr (ExecuTorch's ``[cpuinfo_utils.cpp:…]``
    and LLM-runner lines, LiteRT-LM's ``INFO:``/``W0000`` lines) while the block runs: file
    descriptor 2 goes to a temporary log, deleted when the block ends normally. When the block
    raises an error the log is kept and named in the error, so what the runtime said is not lost.
    stdout (fd 1), where generated text streams, is untouched. ``show=True`` hides nothing.
    ``fds=(1, 2)``, ``kind="converter"``: a converter's progress lines on stdout too
    (``matedge export``; a build keeps them in ``build/logs/`` with ``quiet_output`` instead)."""
    if show:
        yield
        return
    import tempfile

    fd, name = tempfile.mkstemp(prefix=f"matedge-{kind}-", suffix=".log")
    os.close(fd)
    try:
        with _descriptors_to(Path(name), fds, kind, name_it=False):
            yield
    except BaseException as e:
        # an error names a log that says something (kept for the user to read); an empty log, or
        # an interruption, which no error reports, leaves nothing behind
        if isinstance(e, Exception) and os.path.getsize(name) > 0:
            _name_log(e, kind, Path(name))
        else:
            os.unlink(name)
        raise
    os.unlink(name)


@functools.cache  # once per process
def hide_stderr_at_exit() -> None:
    """Send fd 2 to /dev/null once Python exits: LiteRT-LM keeps one LiteRT environment alive
    until the process ends, and its C++ destructor logs ``DestroyAccelerator`` lines after the
    command's last output. Registered only by runs that hide the runtime's logs."""
    import atexit

    def _hide() -> None:
        sys.stderr.flush()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)

    atexit.register(_hide)
