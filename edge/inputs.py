"""Input checks shared by every loader: safe identifiers, finite numeric ranges, safe file reads.

Everything a user or a file hands the tool passes through one of these before it is used:

- ``safe_id``: names that become file or folder names (profile names, cost-table devices,
  precisions). Letters, digits, ``.``, ``_`` and ``-``; starts with a letter or digit (so never
  ``.``, ``..``, a hidden name or an option such as ``-F``); at most 64 characters.
- ``RANGES``: the finite, documented range of every numeric field (profiles, cost tables, model
  configs, command-line counts). ``inf``, ``nan`` and ``1e308`` are out of range everywhere.
- ``read_json`` / ``read_toml``: a regular file of bounded size (never a FIFO that blocks, a
  folder, or gigabytes), parsed with every parser failure (huge integers, deep nesting, bad
  UTF-8) turned into one ``MatEdgeError`` line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import stat
import tomllib
from pathlib import Path

from edge.errors import MatEdgeError

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SAFE_ID_TEXT = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
MAX_FILE_BYTES = 64 * 2**20  # a profile, config, meta or cost table is kilobytes; 64 MiB is absurd

# field -> (low, high), both inclusive. The README of device_profiles/ and the README list them.
RANGES: dict[str, tuple[float, float]] = {
    # device profiles
    "threads": (1, 256),
    "context": (2, 1 << 20),
    "memory_mb": (1e-3, 1e7),  # up to 10 TB
    "decode_ms_per_token": (1e-3, 1e6),
    "first_token_ms": (1e-3, 1e7),
    "prompt_tokens": (1, 1 << 20),
    "gemm_gflops": (1e-3, 1e7),
    "memory_bandwidth_gbs": (1e-3, 1e5),
    "cores": (1, 4096),
    "ram_gb": (1e-3, 1e5),
    "runtime_overhead_mb": (0, 1e6),
    # cost tables
    "latency_ms": (0, 1e7),
    "bytes": (0, 2**50),
    "ms_per_mib": (0, 1e6),
    # model configs
    "vocab_size": (2, 1 << 20),
    "d_model": (2, 1 << 15),
    "n_layers": (1, 512),
    "n_heads": (1, 1024),
    "n_kv_heads": (1, 1024),
    "d_ff": (1, 1 << 18),
    "max_context": (2, 1 << 20),
    "rope_base": (1e-3, 1e12),
    "parameters": (1, 2e10),  # 80 GB of fp32 weights: checked before anything is allocated
}


def safe_id(value, what: str) -> str:
    """``value`` if it is a safe identifier (see module doc), else MatEdgeError naming ``what``."""
    if not isinstance(value, str) or not SAFE_ID.match(value):
        raise MatEdgeError(f"{what} = {value!r} (allowed: {SAFE_ID_TEXT})")
    return value


def is_safe_id(value) -> bool:
    return isinstance(value, str) and bool(SAFE_ID.match(value))


def is_number(v) -> bool:
    """A real int or float (not bool), finite."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def in_range(v, key: str, integer: bool = False) -> bool:
    """``v`` is a finite number (an int when ``integer``) inside RANGES[key]."""
    lo, hi = RANGES[key]
    if integer and (not isinstance(v, int) or isinstance(v, bool)):
        return False
    return is_number(v) and lo <= v <= hi


def range_text(key: str, integer: bool = False) -> str:
    lo, hi = RANGES[key]
    kind = "an integer" if integer else "a number"
    return f"{kind} in [{_fmt(lo)}, {_fmt(hi)}]"


def _fmt(v: float) -> str:
    return f"{int(v):,}" if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"


def int_arg(lo: int, hi: int):
    """An argparse ``type=`` for an integer option in [lo, hi] (a bad value is a one-line error)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer (allowed: {lo}..{hi})") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{v} is out of range (allowed: {lo}..{hi})")
        return v

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


def positive_float_arg(hi: float):
    """An argparse ``type=`` for a finite number in (0, hi] (a bad value is a one-line error)."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number (allowed: (0, {_fmt(hi)}])") from None
        if not (math.isfinite(v) and 0 < v <= hi):
            raise argparse.ArgumentTypeError(f"{text} is out of range (allowed: (0, {_fmt(hi)}])")
        return v

    parse.__name__ = "number"
    return parse


def read_text(path: str | Path, what: str, max_bytes: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of a regular file; MatEdgeError (one line) for anything else."""
    path = Path(path)
    try:
        st = path.stat()  # follows links: a link to a FIFO is still a FIFO
    except FileNotFoundError:
        raise MatEdgeError(f"{what} {str(path)!r} not found") from None
    except OSError as e:
        raise MatEdgeError(f"{what} {str(path)!r}: cannot read ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise MatEdgeError(f"{what} {str(path)!r} is a folder (allowed: a file)")
    if not stat.S_ISREG(st.st_mode):
        raise MatEdgeError(f"{what} {str(path)!r} is not a regular file (a FIFO, device or socket; allowed: a file)")
    if st.st_size > max_bytes:
        raise MatEdgeError(f"{what} {str(path)!r} is {st.st_size:,} bytes (allowed: at most {max_bytes:,})")
    try:
        # O_NONBLOCK: a file swapped for a FIFO after the stat must not block the open.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise MatEdgeError(f"{what} {str(path)!r}: cannot read ({e.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MatEdgeError(f"{what} {str(path)!r} is not UTF-8 text ({e.reason} at byte {e.start})") from None


def parse_json(text: str, what: str):
    """json.loads with every failure (syntax, >4300-digit ints, deep nesting) as one line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise MatEdgeError(f"{what}: not valid JSON ({e})") from None
    except (ValueError, RecursionError) as e:  # int digit limit, nesting past the stack
        raise MatEdgeError(f"{what}: not valid JSON ({_short(e)})") from None


def read_json(path: str | Path, what: str):
    """Parse a JSON file safely (see read_text and parse_json)."""
    return parse_json(read_text(path, what), f"{what} {str(path)!r}")


def read_toml(path: str | Path, what: str) -> dict:
    """Parse a TOML file safely (huge integers and deep nesting are one-line errors too)."""
    text = read_text(path, what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise MatEdgeError(f"{what} {str(path)!r}: invalid TOML: {e}") from None
    except (ValueError, RecursionError) as e:
        raise MatEdgeError(f"{what} {str(path)!r}: invalid TOML ({_short(e)})") from None


def _short(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__
