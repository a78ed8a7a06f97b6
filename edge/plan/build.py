"""The build: for each device profile, choose, slice, export, verify and measure a submodel.

Per device: make sure a cost table exists (measure when the device is reachable and the table is
missing or stale, else estimate and say so), plan the most accurate spec under the profile's
limits, slice it (and a smaller fallback when memory is tight), export with the profile's
backend and precision (reusing cached artifacts by content hash), check parity, measure the
artifact on the device when reachable, and write ``build/<device>/`` atomically: the artifacts,
``manifest.json``, ``report.md`` and PNG charts.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from edge.device.cost_table import CostTable
from edge.checkpoint import WEIGHTS, atomic_dir, load_model
from edge.errors import MatEdgeError
from edge.plan.elastic import FRONTIER_LEVELS
from edge.fsguard import atomic_write_text
from edge.guard import os_error_text
from edge.inputs import is_number, read_json, safe_id
from edge.device.profiles import DeviceProfile
from edge.plan.steps import ParityFailure, ensure_table, export_cached, measure_on_device, write_report
from edge.plan.manifest import Manifest, make_manifest
from edge.plan.planner import Plan, SearchSettings, plan
from edge.spec import Spec, compact_spec, format_spec, uniform_specs

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
    force: bool = False  # replace build/<device>/ folders that matedge did not write
    progress: bool = True
    elastic: bool = False  # an elastic artifact for every device (else only where the profile asks)
    frontier_members: int = FRONTIER_LEVELS  # latency-frontier members of an elastic artifact besides S/M/L/XL
    elastic_members: tuple[str, ...] | None = None  # its uniform members (None: every granularity)


@dataclass
class DeviceResult:
    device: str
    ok: bool
    error: str = ""
    bad_input: bool = False  # the failure is the user's to fix (MatEdgeError), not a bug
    manifest: dict | None = None  # manifest.json as written
    record: Manifest | None = None  # the same, typed
    folder: Path | None = None


def limits_of(profile: DeviceProfile, largest_decode_ms: float | None = None) -> dict[str, float]:
    """The limits the planner enforces, keyed like ``cost_fn``'s output. A profile's
    ``decode_vs_largest`` share of ``largest_decode_ms`` (the largest spec's predicted decode on
    the device's cost table) tightens the decode limit when it is lower."""
    lim = profile.limits
    decode = lim.decode_ms_per_token
    if lim.decode_vs_largest is not None and largest_decode_ms is not None:
        decode = min(decode, lim.decode_vs_largest * largest_decode_ms)
    return {"decode_ms_per_token": decode, "first_token_ms": lim.first_token_ms, "memory_mb": lim.memory_mb}


def device_limits(profile: DeviceProfile, config, table: CostTable, log=print) -> dict[str, float]:
    """``limits_of`` the profile on its cost table; says so when the relative decode limit binds."""
    largest = (config.granularity_names[-1],) * config.n_layers
    largest_ms = cost_fn_for(table)(largest)["decode_ms_per_token"]
    limits = limits_of(profile, largest_ms)
    if limits["decode_ms_per_token"] < profile.limits.decode_ms_per_token:
        log(f"   decode limit {limits['decode_ms_per_token']:.3g} ms/token: {profile.limits.decode_vs_largest:g} of "
            f"{compact_spec(largest)}'s predicted {largest_ms:.3g} (decode_vs_largest)")
    return limits


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
                saved = read_json(self.path, "loss cache")
                self.scorer.losses.update({tuple(k.split(",")): float(v) for k, v in saved.items()
                                           if is_number(v)})
            except (MatEdgeError, AttributeError):
                pass  # a damaged cache only costs time

    bar = None  # a progress bar to advance on each loss actually computed

    def __call__(self, spec: Spec) -> float:
        fresh = tuple(spec) not in self.scorer.losses
        loss = self.scorer.loss(spec)
        if fresh and self.bar is not None:
            self.bar.update(1)
        return loss

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps({",".join(k): v for k, v in self.scorer.losses.items()}))


def build_all(profiles: list[DeviceProfile], settings: BuildSettings, log=print) -> list[DeviceResult]:
    """Build every profile; one failing device does not stop the others."""
    model = load_model(settings.checkpoint)
    if not model.config.is_universal:
        raise MatEdgeError(f"{settings.checkpoint} is a sliced dense model; build from the universal checkpoint")
    # Score specs on windows the model can hold (the tiny preset's max_context is 64).
    settings = dataclasses.replace(settings, seq_len=min(settings.seq_len, model.config.max_context))
    losses = LossCache(model, settings.checkpoint, settings)
    results = []
    for profile in profiles:
        log(f"== {profile.name}: {profile.backend} {profile.precision}, transport {profile.transport}")
        try:
            record, folder = build_device(profile, model, losses, settings, log)
            results.append(DeviceResult(profile.name, True, manifest=record.to_dict(), record=record, folder=folder))
        except MatEdgeError as e:
            results.append(DeviceResult(profile.name, False, error=str(e), bad_input=True))
            log(f"   failed: {e}")
        except ParityFailure as e:
            results.append(DeviceResult(profile.name, False, error=str(e)))
            log(f"   failed: {e}")
        except OSError as e:  # disk full, read-only folder, ...: the user's to fix, one line
            results.append(DeviceResult(profile.name, False, error=os_error_text(e), bad_input=True))
            log(f"   failed: {os_error_text(e)}")
        except Exception as e:  # a bug in one device's build must not stop the others
            results.append(DeviceResult(profile.name, False, error=f"{type(e).__name__}: {e}"))
            traceback.print_exc(file=sys.stderr)
        finally:
            losses.save()
    return results


def build_device(profile: DeviceProfile, model, losses: LossCache, settings: BuildSettings, log=print):
    """Plan, export, verify and measure one device; returns (Manifest, folder)."""
    from tqdm import tqdm

    from edge.device.profiler import clamp_to_model

    profile = clamp_to_model(profile, model.config)  # the context and prompt the model can hold
    table, table_status, transport = ensure_table(profile, model.config, settings, log)
    limits = device_limits(profile, model.config, table, log)
    with tqdm(total=settings.search.max_evaluations, desc="   scoring feasible specs (val loss)", unit="spec",
              disable=not settings.progress, leave=False) as losses.bar:
        result = plan(model.config, cost_fn_for(table), losses, limits, settings.search)
    losses.bar = None
    log(f"   chosen {compact_spec(result.chosen.spec)} (val loss {result.chosen.loss:.4f}; "
        f"{len(result.candidates)} feasible specs scored)")
    folder = settings.out_root / safe_id(profile.name, "profile name")  # never '.', '..' or a path
    with atomic_dir(folder, kind="build", force=settings.force) as tmp:
        shipped = {"model": result.chosen}
        if result.fallback is not None:
            shipped["fallback"] = result.fallback
        artifacts = {role: export_cached(model, cand.spec, profile, settings, losses.ckpt_sha, tmp, role,
                                         losses.corpus.val, log, calibration=losses.corpus.train)
                     for role, cand in shipped.items()}
        if profile.elastic or (settings.elastic and elastic_capable(profile, log)):
            if (entry := elastic_artifact(profile, model, table, losses, settings, result, tmp, log)) is not None:
                artifacts["elastic"] = entry
        measured = measure_on_device(transport, profile, artifacts["model"], settings, table, log)
        manifest = build_manifest(profile, model, result, artifacts, measured, table, table_status, losses, settings)
        manifest.write(tmp / "manifest.json")
        write_report(tmp, manifest, result, table)
    manifest.warn_if_over()
    return manifest, folder


def elastic_artifact(profile, model, table, losses: LossCache, settings: BuildSettings, result: Plan, dest: Path,
                     log=print) -> dict | None:
    """Members for the device (uniform + the latency frontier under its memory limit alone) in
    one elastic artifact written to ``dest``; its manifest entry. None, saying why, when the
    chosen spec is the only member (the memory limit or --members leaves nothing to switch to):
    model.pte already is that artifact."""
    from edge.plan.elastic import build_elastic, choose_members
    from edge.tokenizer import load_tokenizer
    from exporters.logs import quiet_output

    memory = {"memory_mb": limits_of(profile)["memory_mb"]}  # members may be slower than the target
    # the frontier under the memory limit alone (no second search when no frontier member is asked for)
    wide = plan(model.config, cost_fn_for(table), losses, memory, settings.search).candidates \
        if settings.frontier_members else []
    members, default = choose_members(model.config, cost_fn_for(table), wide, result.chosen.spec,
                                      memory["memory_mb"], levels=settings.frontier_members,
                                      uniform=settings.elastic_members)
    if len(members) < 2:
        log(f"   no elastic artifact: the chosen spec is its only member (the memory limit of "
            f"{memory['memory_mb']:g} MB and the members asked for leave no other); the model artifact is the same")
        return None
    log(f"   exporting elastic artifact: members {', '.join(members)}, default {default}, with parity checks")
    with quiet_output(settings.out_root / "logs" / f"export-elastic-{profile.name}.log"):
        return build_elastic(model, profile, members, default, dest, losses.corpus.val, losses.corpus.train,
                             load_tokenizer(settings.checkpoint))


def elastic_capable(profile, log=print) -> bool:
    """Whether the profile's backend writes elastic artifacts (--elastic skips the others, saying so)."""
    from exporters.backends import get_backend

    if get_backend(profile.backend).elastic:
        return True
    log(f"   no elastic artifact: backend {profile.backend} does not write one")
    return False


def build_manifest(profile, model, result: Plan, artifacts: dict, measured: dict | None, table, table_status: str,
                   losses: LossCache, settings: BuildSettings) -> Manifest:
    """The manifest of one device's build, with the chosen spec's consistency with XL."""
    from edge.evaluate import consistency

    xl = uniform_specs(model.config)[model.config.granularity_names[-1]]
    cons = consistency(model, xl, model, result.chosen.spec, losses.corpus.val, settings.seq_len,
                       settings.eval_tokens)
    return make_manifest(profile, result, artifacts, measured, table, table_status, cons, _tokenizer(settings.checkpoint),
                         {"checkpoint": str(settings.checkpoint), "checkpoint_sha256": losses.ckpt_sha,
                          "eval_tokens": settings.eval_tokens, "seq_len": settings.seq_len})


def _tokenizer(checkpoint) -> dict:
    """The checkpoint's tokenizer for the manifest: its type, size and special ids, and the file
    (tokenizer.json, beside every artifact) that runtimes read."""
    from edge.tokenizer import load_tokenizer

    tok = load_tokenizer(checkpoint)
    hf = tok.hf
    specials = {hf.id_to_token(i): i for i in [tok.bos_id, *tok.eos_ids, tok.pad_id] if i is not None}
    return {"type": tok.name, "vocab_size": tok.vocab_size, "specials": specials, **tok.describe()}
