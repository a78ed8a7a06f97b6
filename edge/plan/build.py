"""The build: for each device profile, choose, slice, export, verify and measure a submodel.

Per device: make sure a cost table exists (measure when the device is reachable and the table is
missing or stale, else estimate and say so), plan the most accurate spec under the profile's
limits, slice it (and a smaller fallback when memory is tight), export with the profile's
backend and precision (reusing cached artifacts by content hash), check parity, measure the
artifact on the device when reachable, and write ``build/<device>/`` atomically: the artifacts,
``manifest.json``, ``report.md`` and PNG charts.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from edge.device.cost_table import CostTable
from edge.checkpoint import WEIGHTS, atomic_dir, load_meta, load_model
from edge.errors import MatEdgeError
from edge.device.profiles import DeviceProfile
from edge.plan.steps import ParityFailure, ensure_table, export_cached, measure_on_device, write_report
from edge.plan.planner import Candidate, Plan, SearchSettings, plan
from edge.spec import Spec, format_spec, uniform_specs

MANIFEST_SCHEMA = "matedge.manifest/1"
MIB = 2**20


@dataclass
class BuildSettings:
    checkpoint: Path
    out_root: Path = Path("build")
    runs: int = 20  # timed runs when measuring an artifact on its device
    warmup: int = 3
    profile_rounds: int = 1
    eval_tokens: int = 4096  # held-out tokens that score each candidate spec (same tokens for all)
    seq_len: int = 128
    search: SearchSettings = field(default_factory=SearchSettings)
    measure: bool = True  # measure on reachable devices (False: estimate everything)
    progress: bool = True


@dataclass
class DeviceResult:
    device: str
    ok: bool
    error: str = ""
    bad_input: bool = False  # the failure is the user's to fix (MatEdgeError), not a bug
    manifest: dict | None = None
    folder: Path | None = None


def limits_of(profile: DeviceProfile) -> dict[str, float]:
    """The limits the planner enforces, keyed like ``cost_fn``'s output."""
    lim = profile.limits
    return {"decode_ms_per_token": lim.decode_ms_per_token, "first_token_ms": lim.first_token_ms,
            "memory_mb": lim.memory_mb}


def cost_fn_for(table: CostTable):
    """spec -> predicted {decode_ms_per_token, first_token_ms, memory_mb} from a cost table."""

    def costs(spec: Spec) -> dict[str, float]:
        p = table.predict(spec)
        return {"decode_ms_per_token": p["decode_ms"], "first_token_ms": p["prefill_ms"],
                "memory_mb": p["total_bytes"] / MIB}

    return costs


class LossCache:
    """Validation loss per spec for one checkpoint, persisted as JSON across builds."""

    def __init__(self, model, checkpoint: Path, settings: BuildSettings):
        from edge.checkpoint import load_corpus_for
        from edge.evaluate import SpecScorer
        from exporters.base import sha256

        self.ckpt_sha = sha256(Path(checkpoint) / WEIGHTS)
        self.corpus = load_corpus_for(checkpoint)  # tokenized with the checkpoint's own tokenizer
        self.scorer = SpecScorer(model, self.corpus.val, settings.seq_len, settings.eval_tokens)
        self.path = settings.out_root / "loss_cache" / f"{self.ckpt_sha[:16]}-{settings.seq_len}-{settings.eval_tokens}.json"
        if self.path.exists():
            try:
                saved = json.loads(self.path.read_text())
                self.scorer.losses.update({tuple(k.split(",")): v for k, v in saved.items()})
            except (json.JSONDecodeError, AttributeError):
                pass  # a damaged cache only costs time

    bar = None  # a progress bar to advance on each loss actually computed

    def __call__(self, spec: Spec) -> float:
        fresh = tuple(spec) not in self.scorer.losses
        loss = self.scorer.loss(spec)
        if fresh and self.bar is not None:
            self.bar.update(1)
        return loss

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({",".join(k): v for k, v in self.scorer.losses.items()}))
        os.replace(tmp, self.path)


def build_all(profiles: list[DeviceProfile], settings: BuildSettings, log=print) -> list[DeviceResult]:
    """Build every profile; one failing device does not stop the others."""
    model = load_model(settings.checkpoint)
    if not model.config.is_universal:
        raise MatEdgeError(f"{settings.checkpoint} is a sliced dense model; build from the universal checkpoint")
    losses = LossCache(model, settings.checkpoint, settings)
    results = []
    for profile in profiles:
        log(f"== {profile.name}: {profile.backend} {profile.precision}, transport {profile.transport}")
        try:
            manifest, folder = build_device(profile, model, losses, settings, log)
            results.append(DeviceResult(profile.name, True, manifest=manifest, folder=folder))
        except MatEdgeError as e:
            results.append(DeviceResult(profile.name, False, error=str(e), bad_input=True))
            log(f"   failed: {e}")
        except ParityFailure as e:
            results.append(DeviceResult(profile.name, False, error=str(e)))
            log(f"   failed: {e}")
        except Exception as e:  # a bug in one device's build must not stop the others
            results.append(DeviceResult(profile.name, False, error=f"{type(e).__name__}: {e}"))
            traceback.print_exc(file=sys.stderr)
        finally:
            losses.save()
    return results


def build_device(profile: DeviceProfile, model, losses: LossCache, settings: BuildSettings, log=print):
    """Plan, export, verify and measure one device; returns (manifest, folder)."""
    from tqdm import tqdm

    from edge.device.profiler import clamp_to_model

    profile = clamp_to_model(profile, model.config)  # the context and prompt the model can hold
    table, table_status, transport = ensure_table(profile, model.config, settings, log)
    limits = limits_of(profile)
    with tqdm(total=settings.search.max_evaluations, desc="   scoring feasible specs (val loss)", unit="spec",
              disable=not settings.progress, leave=False) as losses.bar:
        result = plan(model.config, cost_fn_for(table), losses, limits, settings.search)
    losses.bar = None
    log(f"   chosen {format_spec(result.chosen.spec)} (val loss {result.chosen.loss:.4f}; "
        f"{len(result.candidates)} feasible specs scored)")
    folder = settings.out_root / profile.name
    with atomic_dir(folder) as tmp:
        shipped = {"model": result.chosen}
        if result.fallback is not None:
            shipped["fallback"] = result.fallback
        artifacts = {role: export_cached(model, cand.spec, profile, settings, losses.ckpt_sha, tmp, role,
                                         losses.corpus.val, log)
                     for role, cand in shipped.items()}
        measured = measure_on_device(transport, profile, artifacts["model"], settings, table, log)
        manifest = make_manifest(profile, model, result, artifacts, measured, table, table_status, losses, settings)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        write_report(tmp, manifest, result, table)
    warn_if_over(manifest)
    return manifest, folder


def warn_if_over(manifest: dict) -> None:
    """A warning (stderr) for each limit the measured artifact exceeds although predicted under it:
    the device has changed (load, thermal state, another tenant) since its cost table was measured."""
    for key, ok in (manifest.get("measured_within_limits") or {}).items():
        if not ok:
            print(f"warning: {manifest['device']}: measured {key} {manifest['measured'][key]:.3f} exceeds the limit "
                  f"{manifest['limits'][key]} (predicted {manifest['predicted'][key]:.3f}); if the device is busier "
                  f"than when it was profiled, re-run `matedge profile --device {manifest['device']}`", file=sys.stderr)


def _candidate_dict(c: Candidate | None) -> dict | None:
    if c is None:
        return None
    return {"spec": format_spec(c.spec), "params": c.params, "val_loss": c.loss, "predicted": c.costs,
            "source": c.source}


def make_manifest(profile, model, result: Plan, artifacts: dict, measured: dict | None, table: dict,
                  table_status: str, losses: LossCache, settings: BuildSettings) -> dict:
    """Everything an app (and a person) needs to know about this device's build."""
    from edge.data import TOKENIZER
    from edge.evaluate import consistency

    names = model.config.granularity_names
    xl = uniform_specs(model.config)[names[-1]]
    cons = consistency(model, xl, model, result.chosen.spec, losses.corpus.val, settings.seq_len,
                       settings.eval_tokens)
    limits = limits_of(profile)
    within = None
    if measured:
        within = {k: measured[k] <= v for k, v in limits.items() if k in measured}
    return {
        "schema": MANIFEST_SCHEMA, "device": profile.name, "description": profile.description,
        "backend": profile.backend, "precision": profile.precision, "threads": profile.threads,
        "context": profile.context, "prompt_tokens": profile.limits.prompt_tokens,
        "limits": limits, "estimated": table.estimated, "cost_table": table_status,
        **_candidate_dict(result.chosen), "consistency_with_xl": cons,
        "best_uniform": _candidate_dict(result.best_uniform),
        "fallback": _candidate_dict(result.fallback),
        "measured": measured, "measured_within_limits": within,
        "artifacts": {role: a for role, a in artifacts.items()},
        "tokenizer": TOKENIZER,
        "provenance": {"checkpoint": str(settings.checkpoint), "checkpoint_sha256": losses.ckpt_sha,
                       "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                       "eval_tokens": settings.eval_tokens, "seq_len": settings.seq_len,
                       "candidates_scored": len(result.candidates),
                       "libraries": table.provenance.get("libraries", {})},
    }
