"""Model configuration: one flat dataclass plus named presets.

A config describes either the *universal* MatFormer model (every layer's FFN has ``d_ff`` hidden
units, nested into granularities) or a *dense* submodel sliced from it (``ffn_sizes`` lists each
layer's own intermediate size, as Gemma 3n's config does).
"""

from __future__ import annotations

from edge.errors import MatEdgeError
from edge.inputs import RANGES, in_range, is_number, range_text, read_json

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path


class ConfigError(MatEdgeError):
    """A config value is out of range; the message names the field, value and what is allowed."""


GRANULARITY_NAMES = ("S", "M", "L", "XL")
GRANULARITY_FRACTIONS = (1 / 8, 1 / 4, 1 / 2, 1.0)


@dataclass
class MatFormerConfig:
    vocab_size: int = 260  # 256 bytes + <pad> <bos> <eos> <sep>; see edge.data
    d_model: int = 256
    n_layers: int = 6
    n_heads: int = 8
    n_kv_heads: int = 4  # grouped-query attention when < n_heads
    d_ff: int = 1024
    granularity_fractions: tuple[float, ...] = GRANULARITY_FRACTIONS
    granularity_names: tuple[str, ...] = GRANULARITY_NAMES
    max_context: int = 256
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    # Dense submodels only: per-layer intermediate size. None = the universal model (d_ff each).
    ffn_sizes: tuple[int, ...] | None = None
    # Granularity names per layer for a sliced dense model (provenance, not used by forward).
    spec: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        try:
            self.granularity_fractions = tuple(_real(f) for f in self.granularity_fractions)
            self.granularity_names = tuple(_name(n) for n in self.granularity_names)
            if self.ffn_sizes is not None:
                self.ffn_sizes = tuple(_integer(s) for s in self.ffn_sizes)
            if self.spec is not None:
                self.spec = tuple(_name(n) for n in self.spec)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"invalid config: {e}") from None
        self.validate()

    # -- derived sizes -------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def widths(self) -> dict[str, int]:
        """FFN hidden units of each granularity, e.g. {"S": 128, "M": 256, "L": 512, "XL": 1024}."""
        return {n: round(self.d_ff * f) for n, f in zip(self.granularity_names, self.granularity_fractions)}

    @property
    def is_universal(self) -> bool:
        return self.ffn_sizes is None

    def layer_ffn_sizes(self) -> tuple[int, ...]:
        """Each layer's stored FFN width: d_ff everywhere for the universal model."""
        return self.ffn_sizes if self.ffn_sizes is not None else (self.d_ff,) * self.n_layers

    # -- validation ----------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ConfigError listing every invalid field (name, value, what is allowed)."""
        problems = []

        def need(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                problems.append(f"{name}={getattr(self, name)!r} (allowed: {allowed})")

        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "max_context"):
            need(in_range(getattr(self, name), name, integer=True), name, range_text(name, integer=True))
        for name in ("rope_base", "norm_eps"):
            need(is_number(getattr(self, name)), name, "a finite number")
        need(isinstance(self.tie_embeddings, bool), "tie_embeddings", "true or false")
        if problems:
            raise ConfigError("invalid config: " + "; ".join(problems))
        # Checked before anything is allocated: a config is a promise of this many weights.
        params = self.vocab_size * self.d_model + self.n_layers * (4 * self.d_model ** 2 + 3 * self.d_model * self.d_ff)
        need(in_range(params, "parameters", integer=True), "d_model",
             f"sizes whose model has at most {RANGES['parameters'][1]:.0e} parameters (this one: {params:.2e})")
        need(self.d_model % self.n_heads == 0, "n_heads", f"a divisor of d_model={self.d_model}")
        need(self.n_kv_heads <= self.n_heads and self.n_heads % self.n_kv_heads == 0, "n_kv_heads",
             f"a divisor of n_heads={self.n_heads}")
        need(self.d_model % self.n_heads != 0 or self.head_dim % 2 == 0, "d_model",
             "d_model / n_heads must be even (RoPE rotates pairs)")
        fr = self.granularity_fractions
        need(len(fr) >= 1 and all(0 < a < b for a, b in zip(fr, fr[1:])) and 0 < fr[0] and fr[-1] == 1.0,
             "granularity_fractions", "strictly increasing fractions in (0, 1], the last equal to 1")
        need(len(self.granularity_names) == len(fr) and len(set(self.granularity_names)) == len(fr),
             "granularity_names", f"{len(fr)} distinct names, one per fraction")
        need(all(round(self.d_ff * f) >= 1 and abs(self.d_ff * f - round(self.d_ff * f)) < 1e-9 for f in fr),
             "d_ff", "a multiple of every granularity's denominator (e.g. of 8 for S/M/L/XL)")
        need(in_range(self.rope_base, "rope_base"), "rope_base", range_text("rope_base"))
        need(0 < self.norm_eps < 1, "norm_eps", "a number in (0, 1)")
        if self.ffn_sizes is not None:
            need(len(self.ffn_sizes) == self.n_layers and all(0 < s <= self.d_ff for s in self.ffn_sizes),
                 "ffn_sizes", f"{self.n_layers} integers in [1, d_ff={self.d_ff}]")
        if problems:
            raise ConfigError("invalid config: " + "; ".join(problems))

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "MatFormerConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"a config is a JSON object, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown} (allowed: {sorted(known)})")
        return cls(**d)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "MatFormerConfig":
        return cls.from_dict(read_json(path, "model config"))

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "MatFormerConfig":
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r} (allowed: {', '.join(PRESETS)})")
        return cls(**{**PRESETS[name], **overrides})


def _real(v) -> float:
    if not is_number(v):
        raise ValueError(f"granularity fraction {v!r} is not a finite number")
    return float(v)


def _integer(v) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise ValueError(f"ffn size {v!r} is not an integer")
    return v


def _name(v) -> str:
    if not isinstance(v, str) or not v or len(v) > 16:
        raise ValueError(f"granularity name {v!r} is not a short string")
    return v


# `tiny` trains in seconds (tests); `small` is the default demo model (<= 15 min on 2 cores).
PRESETS: dict[str, dict] = {
    "tiny": dict(d_model=64, n_layers=4, n_heads=4, n_kv_heads=2, d_ff=256, max_context=64),
    "small": dict(d_model=256, n_layers=6, n_heads=8, n_kv_heads=4, d_ff=1024, max_context=256),
}
DEFAULT_PRESET = "small"
# Where `matedge train` (and `make demo-toy`) trains the default model; commands without a
# CHECKPOINT use it. (`make demo` deploys a real model from runs/smollm2-mat.)
DEFAULT_CHECKPOINT = Path("runs/default")


def default_checkpoint() -> Path:
    """The default model folder: $MATEDGE_DEFAULT_CHECKPOINT if set, else runs/default (read on
    each call, not at import, so a caller that sets the variable later is heard)."""
    return Path(os.environ.get("MATEDGE_DEFAULT_CHECKPOINT", DEFAULT_CHECKPOINT))
