"""The build manifest (``build/<device>/manifest.json``): a typed record with a versioned schema.

Apps read this file, so its shape is a contract: ``manifest.schema.json`` beside this module is
its JSON Schema (the tests validate every manifest a build writes against it), ``schema`` names
the format and ``schema_version`` is bumped when a field changes meaning or disappears.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from edge.plan.planner import Candidate, Plan
from edge.spec import format_spec

MANIFEST_SCHEMA = "matedge.manifest/1"
SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).resolve().parent / "manifest.schema.json"


@dataclass
class Manifest:
    """Everything an app (and a person) needs to know about one device's build."""
    device: str
    description: str
    backend: str
    precision: str
    threads: int
    context: int
    prompt_tokens: int
    limits: dict[str, float]  # {decode_ms_per_token, first_token_ms, memory_mb}
    estimated: bool  # costs are a roofline estimate, not measured on the device
    cost_table: str  # where the table came from ("measured (cached)", "estimated (transport none)", ...)
    spec: str  # the chosen spec, formatted
    params: int
    val_loss: float
    predicted: dict[str, float]  # keyed like limits
    source: str  # "uniform", "monotone" or "evolution"
    consistency_with_xl: dict[str, float]  # {agreement_pct, kl}
    best_uniform: dict | None  # a candidate record (spec, params, val_loss, predicted, source)
    fallback: dict | None
    measured: dict | None  # the shipped artifact on the device (None: not reachable)
    measured_within_limits: dict[str, bool] | None
    artifacts: dict[str, dict]  # role ("model", "fallback") -> file, metadata, spec, cache_key, bytes, sha256, parity
    tokenizer: dict
    provenance: dict
    schema: str = MANIFEST_SCHEMA
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        """The JSON document, keys in the order the file has always had (schema_version second)."""
        d = {"schema": self.schema, "schema_version": self.schema_version}
        for name in self.__dataclass_fields__:
            if name not in d:
                d[name] = getattr(self, name)
        return d

    def write(self, path: Path) -> Path:
        """Write ``manifest.json`` (inside the build's temporary folder, renamed as a whole)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return Path(path)

    @property
    def artifact_bytes(self) -> int:
        """Bytes of every shipped artifact together."""
        return sum((a["bytes"] or 0) for a in self.artifacts.values())

    def warn_if_over(self) -> None:
        """Warn about each limit the measured artifact exceeds (see ``warn_if_over``)."""
        warn_if_over(self.to_dict())


def warn_if_over(manifest: dict) -> None:
    """A warning (stderr) for each limit the measured artifact exceeds although predicted under it:
    the device has changed (load, thermal state, another tenant) since its cost table was measured."""
    for key, ok in (manifest.get("measured_within_limits") or {}).items():
        if not ok:
            print(f"warning: {manifest['device']}: measured {key} {manifest['measured'][key]:.3f} exceeds the limit "
                  f"{manifest['limits'][key]} (predicted {manifest['predicted'][key]:.3f}); if the device is busier "
                  f"than when it was profiled, re-run `matedge profile --device {manifest['device']}`", file=sys.stderr)


def candidate_record(c: Candidate | None) -> dict | None:
    """A planner candidate as the manifest stores it."""
    if c is None:
        return None
    return {"spec": format_spec(c.spec), "params": c.params, "val_loss": c.loss, "predicted": c.costs,
            "source": c.source}


def make_manifest(profile, result: Plan, artifacts: dict, measured: dict | None, table, table_status: str,
                  consistency: dict, tokenizer: dict, provenance: dict) -> Manifest:
    """The manifest of one device's build from the plan, the shipped artifacts and the measurement.
    ``provenance``: {checkpoint, checkpoint_sha256, eval_tokens, seq_len} (date, candidates and
    library versions are added here)."""
    limits = result.limits
    within = {k: measured[k] <= v for k, v in limits.items() if k in measured} if measured else None
    return Manifest(
        device=profile.name, description=profile.description, backend=profile.backend, precision=profile.precision,
        threads=profile.threads, context=profile.context, prompt_tokens=profile.limits.prompt_tokens,
        limits=limits, estimated=table.estimated, cost_table=table_status, **candidate_record(result.chosen),
        consistency_with_xl=consistency, best_uniform=candidate_record(result.best_uniform),
        fallback=candidate_record(result.fallback), measured=measured, measured_within_limits=within,
        artifacts=artifacts, tokenizer=tokenizer,
        provenance={"checkpoint": provenance["checkpoint"], "checkpoint_sha256": provenance["checkpoint_sha256"],
                    "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "eval_tokens": provenance["eval_tokens"], "seq_len": provenance["seq_len"],
                    "candidates_scored": len(result.candidates),
                    "libraries": table.provenance.get("libraries", {})})
