"""matedge profile: measure a device's cost table (or estimate it), import, chart, check the predictor."""

from __future__ import annotations

from edge.cli.common import add_checkpoint
from edge.inputs import int_arg

HELP = "measure what each granularity costs on a device (cost table); import, chart, validate"
DESCRIPTION = """\
  matedge profile --device host                    measure on the device, write its cost table
  matedge profile --device iphone-15               transport none: a roofline estimate ('estimated')
  matedge profile import FILE [--out PATH]         accept a table measured elsewhere (schema-checked)
  matedge profile chart --device host              PNG of per-granularity latency and memory
  matedge profile validate-predictor --device host --specs 20
                                                   measure random specs end to end; % errors

Tables live in build/cost_tables/<device>-<precision>.json. The model geometry comes from
CHECKPOINT (default: runs/default, the model `matedge train` trains)."""


def _device_args(p, checkpoint: bool = True) -> None:
    p.add_argument("--device", required=True, metavar="NAME", help="a profile name or .toml path")
    p.add_argument("--precision", help="override the profile's precision (e.g. int8)")
    p.add_argument("--table", help="cost table path (default: build/cost_tables/<device>-<precision>.json)")
    if checkpoint:
        add_checkpoint(p)


def configure(p) -> None:
    p.add_argument("--device", metavar="NAME", help="measure this device (profile name or .toml path)")
    p.add_argument("--precision", help="override the profile's precision (e.g. int8)")
    p.add_argument("--checkpoint", help="model whose geometry to profile (default: runs/default)")
    p.add_argument("--out", help="cost table path (default: build/cost_tables/<device>-<precision>.json)")
    p.add_argument("--runs", type=int_arg(1, 100_000), default=100, help="timed runs per method (default: 100)")
    p.add_argument("--warmup", type=int_arg(0, 10_000), default=10, help="untimed runs first (default: 10)")
    p.add_argument("--rounds", type=int_arg(1, 1000), default=5,
                   help="round-robin passes over the micro-models, each run in a fresh process; the table keeps "
                        "the median of the passes (default: 5)")
    p.add_argument("--chart", help="also write a PNG chart of the table here")
    p.add_argument("--force", action="store_true",
                   help="replace an --out file that is not a cost table, or a --chart file that is not a chart")
    p.add_argument("--statistic", choices=("median", "min"), default="median",
                   help="latency of a method: median of the runs, or min (uncontended cost on a shared machine)")
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    imp = sub.add_parser("import", help="validate a cost table measured elsewhere and store it")
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--out", dest="import_out", help="where to store it (default: the device's table path)")
    imp.add_argument("--force", dest="import_force", action="store_true",
                     help="replace an --out file that is not a cost table")
    chart = sub.add_parser("chart", help="PNG of a device's cost table")
    _device_args(chart, checkpoint=False)
    chart.add_argument("--out", dest="chart_out", help="PNG path (default: beside the table)")
    chart.add_argument("--force", dest="chart_force", action="store_true",
                       help="replace an --out file that is not a chart this tool wrote")
    val = sub.add_parser("validate-predictor", help="measure K random specs end to end vs the prediction")
    _device_args(val)
    val.add_argument("--specs", type=int_arg(1, 10_000), default=20, help="random specs to measure (default: 20)")
    val.add_argument("--seed", type=int_arg(0, 2**63 - 1), default=0)
    val.add_argument("--runs", dest="val_runs", type=int_arg(1, 100_000), default=100, help="timed runs per method (default: 100)")
    val.add_argument("--rounds", dest="val_rounds", type=int_arg(1, 1000), default=5,
                     help="processes per spec, median kept: one process alone varies by ~3%% on the host (default: 5)")


def device_profile(name: str, precision: str | None):
    """Load a profile, with its precision overridden (and checked) when asked."""
    from edge.device.profiles import load_profile, with_precision

    return with_precision(load_profile(name), precision)


def run(args) -> int:
    action = getattr(args, "action", None)
    if action == "import":
        return _import(args)
    if action == "chart":
        return _chart(args)
    if action == "validate-predictor":
        return _validate(args)
    if not args.device:
        from edge.errors import MatEdgeError
        raise MatEdgeError("--device NAME is required (see `matedge profiles list`), or an ACTION: import, chart, validate-predictor")
    return _measure(args)


def _measure(args) -> int:
    from pathlib import Path

    from edge.checkpoint import default_checkpoint, load_config
    from edge.device.chart import check_chart_destination, plot_table
    from edge.device.cost_table import is_table_file
    from edge.device.table_source import get_cost_table
    from edge.fsguard import check_file_destination

    profile = device_profile(args.device, args.precision)
    config = load_config(Path(args.checkpoint) if args.checkpoint else default_checkpoint())
    if args.out:  # before minutes of measuring: never replace a file that is not a cost table
        check_file_destination(args.out, is_table_file, args.force)
    if args.chart:
        check_chart_destination(args.chart, args.force)
    got = get_cost_table(profile, config, measure="always", path=args.out, runs=args.runs, warmup=args.warmup,
                         rounds=args.rounds, statistic=args.statistic)
    table, out = got.table, got.path
    _print_table(table)
    print(f"wrote {out}{' (estimated: roofline from [hardware], not measured)' if table.estimated else ''}")
    if table.errors:
        print(f"{len(table.errors)} micro-model(s) failed and were left out of the fit: "
              + "; ".join(e["error"] for e in table.errors))
    if args.chart:
        print(f"wrote {plot_table(table, args.chart, force=args.force)}")
    return 0


def _print_table(table: dict) -> None:
    from edge.texttable import format_table

    rows = [["fixed", *(_cells(table.fixed))]] + [[g, *(_cells(c))] for g, c in table.layers.items()]
    tag = " [estimated]" if table.estimated else ""
    print(f"{table.device}: {table.backend} {table.precision}, {table.threads} thread(s), "
          f"context {table.context}, prompt {table.prompt_tokens} tokens{tag}")
    print(format_table(["part", "prefill ms", "p90", "decode ms", "p90", "weights MiB", "arena MiB", "runtime MiB"], rows))
    for key, terms in table.spill.items():
        print(f"cache spill: {key} " + ", ".join(f"+ {t['ms_per_mib']:.4f} ms per MiB of weights above "
                                                 f"{t['above_bytes'] / 2**20:.1f} MiB" for t in terms))


def _cells(c: dict) -> list:
    return [c["prefill_ms"], c["prefill_p90_ms"], c["decode_ms"], c["decode_p90_ms"],
            c["weight_bytes"] / 2**20, c["arena_bytes"] / 2**20, c["runtime_bytes"] / 2**20]


def _import(args) -> int:
    from edge.device.cost_table import load_table, table_path, write_table

    table = load_table(args.file)  # validated as strictly as a measured one: nothing written if bad
    out = write_table(table, args.import_out or table_path(table.device, table.precision), force=args.import_force)
    _print_table(table)
    print(f"imported {args.file} -> {out}")
    return 0


def _chart(args) -> int:
    from pathlib import Path

    from edge.device.cost_table import load_table, table_path
    from edge.device.chart import plot_table

    profile = device_profile(args.device, args.precision)
    path = Path(args.table or table_path(profile.name, profile.precision))
    table = load_table(path)
    out = args.chart_out or path.with_suffix(".png")
    print(f"wrote {plot_table(table, out, force=args.chart_force)}")
    return 0


def _validate(args) -> int:
    from edge.checkpoint import load_any
    from edge.device.cost_table import load_table, table_path
    from edge.device.validate import format_validation, validate_predictor

    profile = device_profile(args.device, args.precision)
    table = load_table(args.table or table_path(profile.name, profile.precision))
    model, _ = load_any(args.checkpoint)
    result = validate_predictor(profile, model, table, k=args.specs, seed=args.seed, runs=args.val_runs,
                                rounds=args.val_rounds)
    print(format_validation(result))
    return 0
