"""Where third-party output goes: converter chatter to a log file, known warnings filtered.

A build prints the project's progress and results; what the converters print (torch.export,
ExecuTorch, litert-torch, coremltools: native logs, warnings, notices) goes to a log file under
``build/logs/``. Warnings every export raises and a user cannot act on are filtered at the
source, each by its exact message, so nothing else (a real error) is hidden.
"""

from __future__ import annotations

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


@contextmanager
def quiet_output(log_path: Path, mode: str = "w"):
    """Send the converters' chatter (native logs, Python warnings, progress bars) to ``log_path``
    instead of the terminal (file descriptors 1 and 2, so native code is caught too); on failure
    the log is kept and named in the error so the user can read it. ``mode="a"`` appends."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log_path, mode) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        except BaseException as e:
            if isinstance(e, Exception):
                e.args = (f"{e.args[0] if e.args else e} (converter log: {log_path})", *e.args[1:])
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


@contextmanager
def runtime_logs_hidden(show: bool = False):
    """Hide what a runtime's native code prints to stderr (ExecuTorch's ``[cpuinfo_utils.cpp:…]``
    and LLM-runner lines, LiteRT-LM's ``INFO:``/``W0000`` lines) while the block runs: file
    descriptor 2 goes to a temporary log, deleted when the block ends normally. When the block
    raises an error the log is kept and named in the error, so what the runtime said is not lost.
    stdout (fd 1), where generated text streams, is untouched. ``show=True`` hides nothing."""
    if show:
        yield
        return
    import tempfile

    sys.stderr.flush()
    fd, name = tempfile.mkstemp(prefix="matedge-runtime-", suffix=".log")
    saved = os.dup(2)
    os.dup2(fd, 2)
    os.close(fd)
    keep = False
    try:
        yield
    except Exception as e:
        keep = True
        e.args = (f"{e.args[0] if e.args else e} (runtime log: {name})", *e.args[1:])
        raise
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        if not keep:
            os.unlink(name)


def hide_stderr_at_exit() -> None:
    """Send fd 2 to /dev/null once Python exits: LiteRT-LM keeps one LiteRT environment alive
    until the process ends, and its C++ destructor logs ``DestroyAccelerator`` lines after the
    command's last output. Registered (once) only by runs that hide the runtime's logs."""
    import atexit

    def _hide() -> None:
        sys.stderr.flush()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)

    if not getattr(hide_stderr_at_exit, "registered", False):
        atexit.register(_hide)
        hide_stderr_at_exit.registered = True
