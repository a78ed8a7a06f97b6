"""How the profiler reaches a device: run a runner there and collect what it prints.

A command is a list whose ``Path`` items are files to ship (runner, artifact) and whose ``str``
items are literal arguments, e.g. ``[Path("matedge_runner"), "--model", Path("m.pte")]``.
``local`` runs it in place; ``ssh://user@host[:port]`` and ``adb[:serial]`` copy the files into
a fresh folder on the device, run there and remove the folder; ``none`` runs nothing (the
profiler then falls back to a roofline estimate). Every call has a bounded timeout, and nothing
ever goes through a local shell: remote command lines are quoted with ``shlex.quote``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from edge.errors import MatEdgeError

DEFAULT_TIMEOUT_S = 120.0
CONNECT_TIMEOUT_S = 10
# User, host and serial start with a letter, digit (or '_' for a user): never '-', so none can be
# read as an option by ssh, scp or adb (``ssh://-Fconfig`` would make ssh run its ProxyCommand).
# The argument lists put "--" before them as well.
_USER = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,31}"
_HOST = r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}|\[[0-9a-fA-F:]{2,39}\]"
_SSH_RE = re.compile(rf"^ssh://(?:(?P<user>{_USER})@)?(?P<host>{_HOST})(?::(?P<port>\d{{1,5}}))?/?$")
_ADB_RE = re.compile(r"^adb(?::(?P<serial>[A-Za-z0-9][A-Za-z0-9._:-]{0,127}))?$")
ALLOWED = ("local, none, ssh://user@host[:port] or adb[:serial]; user, host and serial start with a letter "
           "or digit and hold only letters, digits, '.', '_', '-' (and ':' in a serial)")


class TransportError(MatEdgeError):
    """The device cannot be reached, or a transport string is malformed."""


@dataclass(frozen=True)
class RunResult:
    """What one runner process did: exit code, output, peak RSS (bytes, None if unknown)."""
    returncode: int
    stdout: str
    stderr: str
    peak_rss_bytes: int | None
    wall_s: float


def parse_transport(text: str) -> dict:
    """Check a transport string; return its parts ({"kind": "ssh", "user", "host", "port"}, ...)."""
    t = text.strip()
    if t in ("local", "none"):
        return {"kind": t}
    if m := _SSH_RE.match(t):
        port = int(m["port"]) if m["port"] else 22
        if not 0 < port < 65536:
            raise TransportError(f"port {port} out of range (allowed: {ALLOWED})")
        return {"kind": "ssh", "user": m["user"], "host": m["host"].strip("[]"), "port": port}
    if m := _ADB_RE.match(t):
        return {"kind": "adb", "serial": m["serial"]}
    raise TransportError(f"unknown transport {text!r} (allowed: {ALLOWED})")


def _files(command: list) -> list[Path]:
    files = [Path(c) for c in command if isinstance(c, Path)]
    for f in files:
        if not f.is_file():
            raise TransportError(f"file to send {str(f)!r} does not exist")
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise TransportError(f"files to send must have distinct names, got {names}")
    return files


class LocalTransport:
    """Runs the command as a child process here.

    ``peak_rss_bytes`` is the child's ``ru_maxrss`` from ``os.wait4``. Linux carries ru_maxrss
    across exec, so for a child of a large process (Python with torch) it is the parent's size
    at fork: an upper bound only. Runners report their own VmHWM, which the profiler uses.
    """

    url = "local"

    def run(self, command: list, timeout: float = DEFAULT_TIMEOUT_S, env: dict | None = None) -> RunResult:
        _files(command)
        argv = [str(c) for c in command]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            start = time.perf_counter()
            try:
                proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                        env={**os.environ, **(env or {})})
            except OSError as e:
                raise TransportError(f"cannot start {argv[0]!r}: {e}") from None
            try:
                status, rss_kb = _wait4(proc, timeout)
            except BaseException:  # interrupted: the runner must not outlive the command
                proc.kill()
                os.waitpid(proc.pid, 0)
                proc.returncode = -9
                raise
            wall = time.perf_counter() - start
            out.seek(0), err.seek(0)
            stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        if status is None:
            return RunResult(124, stdout, stderr + f"\ntimed out after {timeout:.0f} s", None, wall)
        return RunResult(os.waitstatus_to_exitcode(status), stdout, stderr, rss_kb * 1024, wall)

    def describe(self) -> dict:
        return {"transport": "local", "cpu_model": local_cpu_model()}

    def check(self) -> None:
        """Nothing to reach: this machine."""


def _wait4(proc: subprocess.Popen, timeout: float) -> tuple[int | None, int]:
    """Reap ``proc`` with os.wait4 (its own ru_maxrss, in KB); kill it after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from waiting again
            return status, usage.ru_maxrss
        if time.monotonic() > deadline:
            proc.kill()
            os.wait4(proc.pid, 0)
            proc.returncode = -9
            return None, 0
        time.sleep(0.002)


class _RemoteTransport:
    """Shared protocol of ssh and adb: make a folder, copy files, run there, clean up."""

    url = ""

    def _exec(self, argv: list[str], timeout: float, what: str) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise TransportError(f"{self.url}: {argv[0]!r} is not installed (needed to {what})") from None
        except subprocess.TimeoutExpired:
            raise TransportError(f"{self.url}: device unreachable ({what} timed out after {timeout:.0f} s)") from None

    def _checked(self, argv: list[str], timeout: float, what: str) -> str:
        r = self._exec(argv, timeout, what)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["no output"])[-1]
            raise TransportError(f"{self.url}: device unreachable or refused ({what}: {last})")
        return r.stdout

    def run(self, command: list, timeout: float = DEFAULT_TIMEOUT_S, env: dict | None = None) -> RunResult:
        files = _files(command)
        folder = self._checked(self._shell("mktemp -d /tmp/matedge.XXXXXX" if self.tmp_root is None
                                           else f"mkdir -p {self.tmp_root} && mktemp -d {self.tmp_root}/run.XXXXXX"),
                               CONNECT_TIMEOUT_S * 3, "create a work folder").strip()
        try:
            self._push(files, folder, timeout)
            args = [f"./{c.name}" if i == 0 and isinstance(c, Path) else
                    (f"{folder}/{c.name}" if isinstance(c, Path) else str(c)) for i, c in enumerate(command)]
            exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
            line = f"cd {shlex.quote(folder)} && {exports + ' ' if exports else ''}{shlex.join(args)}"
            start = time.perf_counter()
            r = self._exec(self._shell(line), timeout, "run the runner")
            return RunResult(r.returncode, r.stdout, r.stderr, None, time.perf_counter() - start)
        finally:
            self._exec(self._shell(f"rm -rf {shlex.quote(folder)}"), CONNECT_TIMEOUT_S * 3, "clean up")

    def check(self) -> None:
        """Fail fast (bounded timeout) when the device cannot be reached, before any work."""
        self._checked(self._shell("true"), CONNECT_TIMEOUT_S * 3, "connect")

    def describe(self) -> dict:
        r = self._exec(self._shell("grep -m1 -E 'model name|Hardware|Model' /proc/cpuinfo; uname -m"),
                       CONNECT_TIMEOUT_S * 3, "read the CPU model")
        lines = [ln.split(":", 1)[-1].strip() for ln in r.stdout.splitlines() if ln.strip()]
        return {"transport": self.url, "cpu_model": " ".join(lines) or "unknown"}


class SshTransport(_RemoteTransport):
    """``ssh://user@host[:port]`` with the user's ssh configuration (keys, agent, known hosts).

    ``options`` adds ssh ``-o`` settings (the test points IdentityFile and UserKnownHostsFile at
    a throwaway key and host file). BatchMode forbids password prompts, so a missing key fails
    fast instead of hanging.
    """

    tmp_root = None

    def __init__(self, url: str, identity: str | Path | None = None, options: dict | None = None):
        parts = parse_transport(url)
        if parts["kind"] != "ssh":
            raise TransportError(f"not an ssh transport: {url!r}")
        self.url, self.port = url, parts["port"]
        user = f"{parts['user']}@" if parts["user"] else ""
        self.target = f"{user}{parts['host']}"
        self.scp_target = f"{user}[{parts['host']}]" if ":" in parts["host"] else self.target  # IPv6
        opts = {"BatchMode": "yes", "ConnectTimeout": str(CONNECT_TIMEOUT_S), **(options or {})}
        if identity is None and os.environ.get("MATEDGE_SSH_IDENTITY"):
            identity = os.environ["MATEDGE_SSH_IDENTITY"]
        if identity is not None:
            opts.update(IdentityFile=str(identity), IdentitiesOnly="yes")
        self.opts = [x for k, v in opts.items() for x in ("-o", f"{k}={v}")]

    def _shell(self, line: str) -> list[str]:
        return ["ssh", *self.opts, "-p", str(self.port), "--", self.target, line]

    def push_argv(self, files: list[Path], folder: str) -> list[str]:
        # Absolute local paths: a relative name with a ':' would be read as a remote one.
        return ["scp", "-q", "-p", *self.opts, "-P", str(self.port), "--", *(str(Path(f).resolve()) for f in files),
                f"{self.scp_target}:{folder}/"]

    def _push(self, files: list[Path], folder: str, timeout: float) -> None:
        self._checked(self.push_argv(files, folder), timeout, "copy files")


class AdbTransport(_RemoteTransport):
    """``adb[:serial]``: the same protocol over ``adb push`` / ``adb shell`` (not exercised here)."""

    tmp_root = "/data/local/tmp/matedge"

    def __init__(self, url: str):
        parts = parse_transport(url)
        if parts["kind"] != "adb":
            raise TransportError(f"not an adb transport: {url!r}")
        self.url = url
        self.prefix = ["adb", *(["-s", parts["serial"]] if parts.get("serial") else [])]

    def _shell(self, line: str) -> list[str]:
        return [*self.prefix, "shell", "--", line]  # adb shell parses options with getopt: "--" ends them

    def push_argv(self, files: list[Path], folder: str) -> list[str]:
        return [*self.prefix, "push", "--", *(str(Path(f).resolve()) for f in files), f"{folder}/"]

    def _push(self, files: list[Path], folder: str, timeout: float) -> None:
        self._checked(self.push_argv(files, folder), timeout, "push files")
        names = " ".join(shlex.quote(f"{folder}/{f.name}") for f in files)
        self._checked(self._shell(f"chmod 755 {names}"), CONNECT_TIMEOUT_S * 3, "mark files executable")


def get_transport(url: str, **kwargs):
    """The transport object for a profile's transport string; None for ``none`` (estimate)."""
    kind = parse_transport(url)["kind"]
    if kind == "none":
        return None
    if kind == "local":
        return LocalTransport()
    return SshTransport(url, **kwargs) if kind == "ssh" else AdbTransport(url)


def local_cpu_model() -> str:
    """This machine's CPU model from /proc/cpuinfo (platform.processor() is often empty)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()
