"""matedge build: the main job — a verified, measured submodel per device."""

from __future__ import annotations

from edge.inputs import int_arg

HELP = "choose each device's best submodel under its limits; slice, export, verify, measure, report"
DESCRIPTION = """\
For each device profile: make sure a cost table exists (measured when the device is reachable
and the table is missing or stale, else a roofline estimate, marked 'estimated'), search the
uniform, monotone and evolved specs for the lowest validation loss whose predicted latency and
memory fit the limits, slice it, export it with the profile's backend and precision, check parity
against eager PyTorch, measure it on the device when reachable, and write build/<device>/:
the artifact(s), manifest.json, report.md and PNG charts. A smaller fallback spec is shipped
beside it when memory is tight. Artifacts are cached by content hash under build/cache/.

  matedge build --all                 every profile in device_profiles/
  matedge build --device host --device pixel-8

Exit code: 0 when every device built; 2 when a device's input is bad (e.g. limits nothing
meets); 1 when a device failed for another reason."""


def configure(p) -> None:
    p.add_argument("--device", action="append", metavar="NAME", help="a profile name or .toml path (repeatable)")
    p.add_argument("--all", action="store_true", help="every profile in device_profiles/")
    p.add_argument("--checkpoint", help="the universal checkpoint (default: runs/default, the model `matedge train` "
                                        "trains; `make demo` builds runs/smollm2-mat)")
    p.add_argument("--out", default="build", help="output root (default: build)")
    p.add_argument("--no-measure", action="store_true", help="estimate costs even for reachable devices")
    p.add_argument("--eval-tokens", type=int_arg(1, 1 << 24), default=4096, help="held-out tokens per candidate (default: 4096)")
    p.add_argument("--generations", type=int_arg(0, 1000), default=6, help="evolutionary search generations (default: 6)")
    p.add_argument("--population", type=int_arg(1, 10_000), default=16, help="children per generation (default: 16)")
    p.add_argument("--runs", type=int_arg(1, 100_000), default=20, help="timed runs when measuring on a device (default: 20)")
    p.add_argument("--force", action="store_true", help="replace OUT/<device> folders that matedge did not write")
    p.add_argument("--elastic", action="store_true",
                   help="also write an elastic artifact per device (members S/M/L/XL + the latency frontier, "
                        "one KV cache; executorch and litert); a profile asks with elastic = true")
    from edge.plan.elastic import FRONTIER_LEVELS

    p.add_argument("--frontier-members", type=int_arg(0, 32), default=FRONTIER_LEVELS, metavar="N",
                   help="members of an elastic artifact besides S/M/L/XL and the default: specs spread along the "
                        "latency frontier (default: %(default)s; each adds one method to export and check)")
    p.add_argument("--members", metavar="NAMES",
                   help="the uniform members of an elastic artifact, comma-separated granularity names (e.g. S,XL "
                        "for speculative decoding; default: every granularity); the chosen spec is always one")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _members(text: str | None, ckpt, elastic: bool) -> tuple[str, ...] | None:
    """--members as granularity names of the checkpoint's model, or one line saying what is accepted."""
    from edge.checkpoint import load_config
    from edge.errors import MatEdgeError

    if text is None:
        return None
    if not elastic:
        raise MatEdgeError("--members chooses an elastic artifact's members: add --elastic (or elastic = true in a profile)")
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    known = load_config(ckpt).granularity_names
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise MatEdgeError(f"--members {text!r}: expected comma-separated granularity names of the model "
                           f"({', '.join(known)})")
    return names


def run(args) -> int:
    from pathlib import Path

    from edge.plan.build import BuildSettings, build_all
    from edge.checkpoint import CheckpointError, default_checkpoint
    from edge.errors import MatEdgeError
    from edge.device.profiles import list_profiles, load_profile
    from edge.plan.planner import SearchSettings

    if not args.all and not args.device:
        raise MatEdgeError("name a device with --device NAME (see `matedge profiles list`) or use --all")
    names = list_profiles() if args.all else args.device
    profiles = [load_profile(n) for n in names]  # every profile is checked before any work starts
    _check_destinations(Path(args.out), profiles, args.force)
    ckpt = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    if not ckpt.exists():
        raise CheckpointError(f"checkpoint {str(ckpt)!r} not found (run `matedge train`, or pass --checkpoint: "
                              "`make demo` writes runs/smollm2-mat)")
    members = _members(args.members, ckpt, args.elastic or any(p.elastic for p in profiles))
    settings = BuildSettings(checkpoint=ckpt, out_root=Path(args.out), runs=args.runs, eval_tokens=args.eval_tokens,
                             search=SearchSettings(generations=args.generations, population=args.population),
                             measure=not args.no_measure, elastic=args.elastic, progress=not args.quiet,
                             force=args.force, frontier_members=args.frontier_members,
                             elastic_members=members)
    results = build_all(profiles, settings)
    print()
    print(summary(results))
    failed = [r for r in results if not r.ok]
    for r in failed:
        print(f"FAILED {r.device}: {r.error}")
    ok = [r for r in results if r.ok]
    if ok:
        print(f"reports: {', '.join(str(r.folder / 'report.md') for r in ok)}")
    if not failed:
        return 0
    return 2 if all(r.bad_input for r in failed) else 1


def _check_destinations(root, profiles, force: bool) -> None:
    """Before any work: OUT is a folder (or can be one) and no OUT/<device> is someone else's."""
    from edge.fsguard import DestinationError, check_dir_destination
    from edge.inputs import safe_id

    if root.exists() and not root.is_dir():
        raise DestinationError(f"--out {str(root)!r} exists and is not a folder (allowed: a folder for the build)")
    for profile in profiles:
        check_dir_destination(root / safe_id(profile.name, "profile name"), force, what=f"build folder of {profile.name}")


def summary(results) -> str:
    """One aligned row per device: the decision, its quality and its costs."""
    from edge.spec import compact_spec
    from edge.texttable import format_table

    rows = []
    for r in results:
        if not r.ok:
            rows.append([r.device, "FAILED", "-", "-", "-", "-", "-", "-", "-", "-"])
            continue
        m = r.record
        meas = m.measured or {}
        uni = m.best_uniform
        rows.append([m.device, compact_spec(m.spec), m.params, round(m.val_loss, 4),
                     f"{uni['spec']} {uni['val_loss']:.4f}" if uni else "none fits",
                     _pair(m.predicted["decode_ms_per_token"], meas.get("decode_ms_per_token")),
                     _pair(m.predicted["first_token_ms"], meas.get("first_token_ms")),
                     _pair(m.predicted["memory_mb"], meas.get("memory_mb")),
                     f"{m.artifact_bytes / 2**20:.1f}", "estimated" if m.estimated else "measured"])
    return format_table(["device", "spec", "params", "val loss", "best uniform", "decode ms pred/meas",
                         "1st token ms pred/meas", "memory MiB pred/meas", "artifacts MiB", "costs"], rows)


def _pair(pred: float, meas: float | None) -> str:
    return f"{pred:.2f} / {meas:.2f}" if meas is not None else f"{pred:.2f} / -"
