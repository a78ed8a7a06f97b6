"""Where a device's cost table comes from: the stored file, a measurement, or a roofline estimate.

One function, ``get_cost_table``, decides it for ``matedge build``, ``profile`` and ``predict``
(each used to write its own "transport none -> estimate, else measure"):

    measure="auto"    reuse the stored table while it still describes this device and model (a
                      stored estimate only while the device cannot be reached); else measure when
                      the device answers, else estimate                              (build)
    measure="never"   never run anything on the device: the stored table while it is still
                      valid, else an estimate                                        (build --no-measure)
    measure="always"  measure now, whatever is stored (transport none: the estimate) (profile)
    measure="stored"  the stored table as it is; without one, the estimate for a device with
                      transport none, else CostTableError                            (predict)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge.device.cost_table import CostTable, CostTableError, check_model, load_table, table_path, write_table
from edge.device.profiles import DeviceProfile
from edge.device.runners import RUNNER_LABELS
from edge.device.transports import get_transport, parse_transport
from edge.errors import MatEdgeError
from exporters.backends import get_backend

MODES = ("auto", "never", "always", "stored")
PROBE_TIMEOUT_S = 10.0


@dataclass
class TableChoice:
    """A cost table and how it was obtained."""
    table: CostTable
    status: str  # "measured", "measured (cached)", "estimated (cached)", "estimated (<why>)"
    transport: object | None  # the device's transport when it was reached, else None
    path: Path | None  # where the table is stored (None: not written)


def _silent(*_args) -> None:
    pass


def table_is_stale(table: dict, profile: DeviceProfile, config) -> str:
    """Why a stored table no longer describes this device and model ('' when it still does)."""
    try:
        check_model(table, config)
    except MatEdgeError as e:
        return str(e)
    for key, want in (("backend", profile.backend), ("precision", profile.precision),
                      ("threads", profile.threads), ("context", profile.context),
                      ("prompt_tokens", profile.limits.prompt_tokens)):
        if table.get(key) != want:
            return f"{key} was {table.get(key)!r}, the profile now says {want!r}"
    return _method_changed(table, profile.backend)


def _method_changed(table: dict, backend_name: str) -> str:
    """Why a table this project's runner measured no longer matches how artifacts are exported
    and timed ('' if it does). Tables from other runners (imported) are not judged."""
    backend, prov = get_backend(backend_name), table.get("provenance") or {}
    if table.get("estimated") or not backend.runner or prov.get("runner") != RUNNER_LABELS.get(backend.runner):
        return ""
    method = prov.get("method")  # tables from before the field have none: measured another way
    if method != backend.cost_method:
        return f"it was measured with an earlier {backend_name} export or runner ({method or 'unrecorded'}; now: {backend.cost_method})"
    return ""


def probe(transport) -> str:
    """'' when the device answers a trivial command, else why not (bounded by a timeout)."""
    try:
        result = transport.run(["true"], timeout=PROBE_TIMEOUT_S)
    except MatEdgeError as e:
        return str(e)
    return "" if result.returncode == 0 else f"probe exited with {result.returncode}: {result.stderr.strip()[:200]}"


def get_cost_table(profile: DeviceProfile, config, *, measure: str = "auto", path: str | Path | None = None,
                   log=_silent, hint: str = "", **measure_args) -> TableChoice:
    """The cost table of ``profile`` for a model of ``config``'s geometry (see the module docstring
    for ``measure``). ``path``: the stored table (default build/cost_tables/<device>-<precision>.json);
    new tables are written there, except in "stored" mode (whose error names ``hint``, the
    command that measures the table). ``measure_args`` go to
    ``edge.device.profiler.measure_table`` (runs, warmup, rounds, statistic, progress)."""
    if measure not in MODES:
        raise ValueError(f"measure={measure!r} (allowed: {', '.join(MODES)})")
    explicit = path is not None
    path = Path(path) if explicit else table_path(profile.name, profile.precision)
    unreachable = parse_transport(profile.transport)["kind"] == "none"
    if measure == "stored":
        return _stored(profile, config, path, explicit, unreachable, hint or f"matedge profile --device {profile.name}")
    if measure == "always":
        table, status = (_estimate(profile, config), "estimated (transport none)") if unreachable else \
            (_measure(profile, config, None, measure_args), "measured")
        return TableChoice(table, status, None, write_table(table, path))
    transport, why_not = None, "transport none"
    if not unreachable and measure == "auto":
        transport = get_transport(profile.transport)
        why_not = probe(transport)
        if why_not:
            transport = None
    if path.exists():
        table = load_table(path)
        stale = table_is_stale(table, profile, config)
        if not stale and (not table.estimated or transport is None):
            status = "estimated (cached)" if table.estimated else "measured (cached)"
            log(f"   cost table: {status} {path}")
            return TableChoice(table, status, transport, path)
        log(f"   cost table {path} is stale: {stale or 'an estimate, and the device is reachable now'}")
    if transport is not None:
        log(f"   measuring the cost table on {profile.name}")
        table, status = _measure(profile, config, transport, measure_args), "measured"
    else:
        table, status = _estimate(profile, config), f"estimated ({why_not})"
        log(f"   cost table estimated from [hardware]: {why_not}")
    return TableChoice(table, status, transport, write_table(table, path))


def _stored(profile: DeviceProfile, config, path: Path, explicit: bool, unreachable: bool, hint: str) -> TableChoice:
    if path.exists() or explicit:
        return TableChoice(load_table(path), "stored", None, path)
    if unreachable:  # nothing can be measured: the roofline stands in
        return TableChoice(_estimate(profile, config), "estimated (transport none)", None, None)
    raise CostTableError(f"no cost table for {profile.name} {profile.precision} at {path}: run `{hint}` first")


def _measure(profile: DeviceProfile, config, transport, measure_args: dict) -> CostTable:
    from edge.device.profiler import measure_table

    return measure_table(profile, config, transport=transport, **measure_args)


def _estimate(profile: DeviceProfile, config) -> CostTable:
    from edge.device.estimate import estimate_table

    return estimate_table(profile, config)
