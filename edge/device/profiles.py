"""Device profiles: what a target device may spend on the model, and how to reach it.

One TOML file per device in ``device_profiles/`` (read with the standard library's ``tomllib``;
every field is documented in ``device_profiles/README.md``). The loader checks a file against
the schema below and reports *every* problem at once, each as ``file: field = value (allowed:
...)``, so a user fixes a profile in one pass.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from edge.errors import MatEdgeError
from edge.inputs import RANGES, SAFE_ID_TEXT, in_range, is_safe_id, range_text, read_toml
from exporters.backends import BACKENDS

MAX_STR = 500  # description, cpu, transport: a line, not a document

PROFILES_DIR = Path(__file__).resolve().parents[2] / "device_profiles"  # the shipped profiles


def profiles_dir() -> Path:
    """Where profile names are looked up: $MATEDGE_PROFILES_DIR if set (read on each call, not at
    import), else the shipped device_profiles/."""
    return Path(os.environ.get("MATEDGE_PROFILES_DIR", PROFILES_DIR))

# Precisions each backend writes, from the exporters' registry (which imports no backend library).
BACKEND_PRECISIONS = {name: b.precisions for name, b in BACKENDS.items()}


class ProfileError(MatEdgeError):
    """A device profile is missing, unreadable or invalid; the message lists every problem."""


@dataclass(frozen=True)
class Limits:
    memory_mb: float  # memory the model may use (weights + KV cache + arena + runtime)
    decode_ms_per_token: float
    first_token_ms: float  # prefill of prompt_tokens tokens
    prompt_tokens: int
    # A decode limit relative to the device's own speed: at most this share of the largest spec's
    # predicted decode (the host profile: whatever machine runs the demo must mix granularities).
    decode_vs_largest: float | None = None


@dataclass(frozen=True)
class Hardware:
    """Facts used only for the roofline estimate when the device cannot be reached."""
    gemm_gflops: float
    memory_bandwidth_gbs: float
    cpu: str = ""
    cores: int = 1
    ram_gb: float = 0.0
    runtime_overhead_mb: float = 0.0  # runtime + runner baseline, added to estimated memory


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    backend: str
    precision: str
    threads: int
    context: int
    transport: str
    limits: Limits
    hardware: Hardware
    elastic: bool = False  # the build also writes an elastic artifact (several members, one file)
    path: Path | None = field(default=None, compare=False)

    def to_dict(self) -> dict:
        """The profile as plain data (for cost tables, manifests and ``profiles show``)."""
        return {"name": self.name, "description": self.description, "backend": self.backend,
                "precision": self.precision, "threads": self.threads, "context": self.context,
                "transport": self.transport, "elastic": self.elastic,
                "limits": {k: v for k, v in vars(self.limits).items() if v is not None},
                "hardware": vars(self.hardware).copy()}


# -- schema: field -> (kind, required, allowed-text) --------------------------------------------
_POS_NUM, _POS_INT, _NONNEG_NUM, _STR = "positive number", "positive integer", "number >= 0", "string"
_BOOL = "boolean (true or false)"
_SHARE = "number in (0, 1]"
TOP = {"name": (_STR, True), "description": (_STR, True), "backend": (_STR, True),
       "precision": (_STR, True), "threads": (_POS_INT, True), "context": (_POS_INT, True),
       "transport": (_STR, True), "elastic": (_BOOL, False)}
LIMITS = {"memory_mb": (_POS_NUM, True), "decode_ms_per_token": (_POS_NUM, True),
          "first_token_ms": (_POS_NUM, True), "prompt_tokens": (_POS_INT, True),
          "decode_vs_largest": (_SHARE, False)}
HARDWARE = {"gemm_gflops": (_POS_NUM, True), "memory_bandwidth_gbs": (_POS_NUM, True),
            "cpu": (_STR, False), "cores": (_POS_INT, False), "ram_gb": (_POS_NUM, False),
            "runtime_overhead_mb": (_NONNEG_NUM, False)}
SECTIONS = {"limits": LIMITS, "hardware": HARDWARE}


def _type_ok(kind: str, v, key: str = "") -> bool:
    """``v`` has the field's type and, for numbers, lies in its finite range (edge.validate.RANGES)."""
    if kind == _STR:
        return isinstance(v, str) and v.strip() != "" and len(v) <= MAX_STR
    if kind == _BOOL:
        return isinstance(v, bool)
    if kind == _SHARE:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1
    if key in RANGES:
        return in_range(v, key, integer=kind == _POS_INT)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    if kind == _POS_INT:
        return isinstance(v, int) and v > 0
    return v >= 0 if kind == _NONNEG_NUM else v > 0


def _allowed(kind: str, key: str) -> str:
    if key in RANGES and kind != _STR:
        return range_text(key, integer=kind == _POS_INT)
    if kind == _SHARE:
        return f"a {kind}: a share of the largest spec's predicted decode"
    return f"a {kind}" + (f" of at most {MAX_STR} characters" if kind == _STR else "")


def _check_table(data: dict, schema: dict, prefix: str, problems: list[str]) -> None:
    for key in sorted(set(data) - set(schema) - (set(SECTIONS) if not prefix else set())):
        problems.append(f"{prefix}{key} = {_show(data[key])}: unknown field (allowed: {', '.join(schema)})")
    for key, (kind, required) in schema.items():
        if key not in data:
            if required:
                problems.append(f"{prefix}{key}: missing (required, {_allowed(kind, key)})")
        elif not _type_ok(kind, data[key], key):
            problems.append(f"{prefix}{key} = {_show(data[key])} (allowed: {_allowed(kind, key)})")


def _show(v) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def validate_data(data: dict, stem: str | None = None) -> list[str]:
    """Every problem of one parsed profile, as ``field = value (allowed: ...)`` strings."""
    from edge.device.transports import TransportError, parse_transport

    problems: list[str] = []
    _check_table(data, TOP, "", problems)
    for section, schema in SECTIONS.items():
        table = data.get(section)
        if table is None:
            problems.append(f"[{section}]: missing section (fields: {', '.join(schema)})")
        elif not isinstance(table, dict):
            problems.append(f"{section} = {table!r} (allowed: a [{section}] table)")
        else:
            _check_table(table, schema, f"{section}.", problems)
    name, backend, precision = data.get("name"), data.get("backend"), data.get("precision")
    if isinstance(name, str) and not is_safe_id(name):  # it names build/<name>/ and cost-table files
        problems.append(f"name = {_show(name)} (allowed: {SAFE_ID_TEXT})")
    elif stem is not None and isinstance(name, str) and name != stem:
        problems.append(f"name = {name!r} (allowed: the file's name without .toml, {stem!r})")
    if isinstance(backend, str) and backend not in BACKEND_PRECISIONS:
        problems.append(f"backend = {backend!r} (allowed: {', '.join(BACKEND_PRECISIONS)})")
    elif isinstance(backend, str) and isinstance(precision, str) and precision not in BACKEND_PRECISIONS[backend]:
        problems.append(f"precision = {precision!r} (allowed for {backend}: {', '.join(BACKEND_PRECISIONS[backend])})")
    if data.get("elastic") is True and isinstance(backend, str) and backend in BACKENDS and not BACKENDS[backend].elastic:
        able = ", ".join(n for n, b in BACKENDS.items() if b.elastic)
        problems.append(f"elastic = true (allowed only with the backends {able}; this profile has {backend!r})")
    if isinstance(data.get("transport"), str):
        try:
            parse_transport(data["transport"])
        except TransportError as e:
            problems.append(f"transport = {data['transport']!r} ({e})")
    limits = data.get("limits") if isinstance(data.get("limits"), dict) else {}
    prompt, context = limits.get("prompt_tokens"), data.get("context")
    if _type_ok(_POS_INT, prompt) and _type_ok(_POS_INT, context) and prompt >= context:
        problems.append(f"limits.prompt_tokens = {prompt!r} (allowed: fewer than context = {context})")
    return problems


def _from_data(data: dict, path: Path | None) -> DeviceProfile:
    top = {k: data[k] for k in TOP if k in data}
    return DeviceProfile(**top, limits=Limits(**data["limits"]), hardware=Hardware(**data["hardware"]), path=path)


def resolve(name_or_path: str | Path) -> Path:
    """A shipped profile's name (``pixel-8``) or a path to a .toml file -> its path."""
    text = str(name_or_path)
    p = Path(text)
    if p.suffix == ".toml" or os.sep in text:
        if not p.exists():
            raise ProfileError(f"profile file {text!r} not found")
        return p  # read_toml refuses a folder, FIFO or device with one line
    if not is_safe_id(text):
        raise ProfileError(f"device profile name {_show(text)} (allowed: {SAFE_ID_TEXT}, or a path to a .toml file)")
    candidate = profiles_dir() / f"{text}.toml"
    if not candidate.is_file():
        raise ProfileError(f"unknown device profile {text!r} (allowed: {', '.join(list_profiles()) or 'none found'}, "
                           f"or a path to a .toml file)")
    return candidate


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """Load and validate one profile; ProfileError lists every problem of the file."""
    path = resolve(name_or_path)
    try:
        data = read_toml(path, "device profile")
    except MatEdgeError as e:
        raise ProfileError(str(e)) from None
    problems = validate_data(data, stem=path.stem)
    if problems:
        raise ProfileError(f"{path}: {len(problems)} problem(s): " + "; ".join(problems))
    return _from_data(data, path)


def list_profiles() -> list[str]:
    """Names of the shipped profiles (file stems in the profiles folder), sorted."""
    folder = profiles_dir()
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


def with_precision(profile: DeviceProfile, precision: str | None) -> DeviceProfile:
    """``profile`` with its precision replaced (None: unchanged); ProfileError if its backend
    cannot write that precision."""
    if precision is None:
        return profile
    allowed = BACKEND_PRECISIONS[profile.backend]
    if precision not in allowed:
        raise ProfileError(f"--precision {precision!r} (allowed for {profile.backend}: {', '.join(allowed)})")
    return dataclasses.replace(profile, precision=precision)
