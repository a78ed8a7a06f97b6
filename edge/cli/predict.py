"""matedge predict: latency and memory of a spec on a device, from its cost table."""

from __future__ import annotations

from edge.cli.common import add_checkpoint

HELP = "predict decode/prefill latency and memory of a spec on a device (from its cost table)"


def configure(p) -> None:
    add_checkpoint(p)
    p.add_argument("--device", required=True, metavar="NAME", help="a profile name or .toml path")
    p.add_argument("--spec", required=True, help='per-layer granularities, e.g. "S,S,M,M,L,XL"')
    p.add_argument("--precision", help="override the profile's precision")
    p.add_argument("--table", help="cost table (default: build/cost_tables/<device>-<precision>.json)")


def run(args) -> int:
    from pathlib import Path

    from edge.checkpoint import default_checkpoint, load_config
    from edge.cli.cost_tables import device_profile
    from edge.device.table_source import get_cost_table
    from edge.plan.build import device_limits
    from edge.spec import format_spec, parse_spec

    profile = device_profile(args.device, args.precision)
    config = load_config(Path(args.checkpoint) if args.checkpoint else default_checkpoint())
    spec = parse_spec(args.spec, config)
    hint = f"matedge profile --device {profile.name}{' --precision ' + profile.precision if args.precision else ''}"
    table = get_cost_table(profile, config, measure="stored", path=args.table, hint=hint).table
    table.check_model(config)
    pred = table.predict(spec)
    tag = "  [estimated]" if pred["estimated"] else ""
    print(f"{profile.name} ({table.backend} {table.precision}), spec {format_spec(spec)}{tag}")
    lim = device_limits(profile, config, table)  # the build's limits (a relative decode limit says so)
    checks = [("decode", pred["decode_ms"], "ms/token", lim["decode_ms_per_token"], f"(p90 {pred['decode_p90_ms']:.3f})"),
              (f"first token ({table.prompt_tokens} tok)", pred["prefill_ms"], "ms", lim["first_token_ms"],
               f"(p90 {pred['prefill_p90_ms']:.3f})"),
              ("memory", pred["total_bytes"] / 2**20, "MiB", lim["memory_mb"],
               f"(weights {pred['weight_bytes'] / 2**20:.2f} + arena {pred['arena_bytes'] / 2**20:.2f} "
               f"+ runtime {pred['runtime_bytes'] / 2**20:.2f})")]
    for name, value, unit, limit, detail in checks:
        verdict = "fits" if value <= limit else "OVER"
        print(f"  {name:<24} {value:10.3f} {unit:<8} limit {limit:<8g} {verdict}  {detail}")
    return 0
