"""The CLI's safety net: every way a command can end becomes one line and a documented exit code.

    0        done
    1        the command ran and reports a failure (e.g. parity failed)
    2        bad input: a MatEdgeError, a bad option, or an operating-system error the user can
             fix (disk full, read-only file system, permission denied, a folder where a file
             belongs, ...)
    130/143  interrupted by SIGINT / SIGTERM (temporaries removed)

Loaders raise MatEdgeError themselves; this net catches what slips past them as one line rather
than a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import sys
from typing import Callable

from edge import interrupt
from edge.errors import MatEdgeError


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (``prog: error: ...``) and exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def os_error_text(e: OSError) -> str:
    """``cannot write 'x': No space left on device`` and the like, from any OSError."""
    name = errno.errorcode.get(e.errno or 0, "")
    what = e.strerror or str(e) or type(e).__name__
    where = f" {str(e.filename)!r}" if e.filename is not None else ""
    hint = {"ENOSPC": "free some space or choose another --out", "EROFS": "choose a writable --out",
            "EACCES": "check the permissions", "EPERM": "check the permissions",
            "EDQUOT": "free some space or choose another --out"}.get(name, "")
    return f"file system error{where}: {what}" + (f" ({hint})" if hint else "")


def run_command(prog: str, fn: Callable[[], int | None]) -> int:
    """Run ``fn`` with signal handling; map its outcome to (one line on stderr, exit code)."""
    with interrupt.handling(prog):
        try:
            return int(fn() or 0)
        except BaseException as e:  # noqa: BLE001 - classified below, bugs re-raised
            return _outcome(prog, e)
        finally:
            interrupt.cleanup()


def _outcome(prog: str, e: BaseException) -> int:
    signum = interrupt.received()
    if signum is not None or isinstance(e, KeyboardInterrupt):
        # Also when the signal surfaced as another exception (a library wrapped it).
        signum = signum or getattr(e, "signum", None) or 2
        interrupt.cleanup()
        print(f"{prog}: interrupted by {_signame(signum)}; temporary files removed", file=sys.stderr)
        return interrupt.exit_code(signum)
    if isinstance(e, MatEdgeError):
        msg = " ".join(str(e).split("\n"))
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return 2
    if isinstance(e, OSError):
        print(f"{prog}: error: {os_error_text(e)}", file=sys.stderr)
        return 2
    if isinstance(e, RecursionError):
        print(f"{prog}: error: input nested too deeply to process", file=sys.stderr)
        return 2
    if isinstance(e, MemoryError):
        print(f"{prog}: error: out of memory (a size in the input is too large for this machine)", file=sys.stderr)
        return 2
    raise e


def _signame(signum: int) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"

