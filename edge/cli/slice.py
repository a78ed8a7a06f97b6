"""matedge slice: write the dense submodel of a spec as its own checkpoint."""

from __future__ import annotations

from edge.cli.common import add_checkpoint, check_writable

HELP = "write the dense submodel of a spec (safetensors + config.json with per-layer sizes)"


def configure(p) -> None:
    add_checkpoint(p, required=True)
    p.add_argument("--spec", required=True, help='per-layer granularities, e.g. "S,S,M,M,L,XL"')
    p.add_argument("--out", required=True, help="folder to write (a folder matedge wrote is replaced atomically)")
    p.add_argument("--force", action="store_true", help="replace an --out folder that matedge did not write")


def run(args) -> int:
    from edge.checkpoint import load_meta, load_model, load_tokenizer, save_model
    from edge.errors import MatEdgeError
    from edge.fsguard import check_dir_destination
    from edge.slicing import slice_model
    from edge.spec import format_spec, param_count, parse_spec

    check_dir_destination(args.out, args.force)  # before any work
    model = load_model(args.checkpoint)
    if not model.config.is_universal:
        raise MatEdgeError(f"{args.checkpoint} is already a sliced dense model; slice the universal checkpoint")
    spec = parse_spec(args.spec, model.config)
    dense = slice_model(model, spec)
    meta = {"sliced_from": str(args.checkpoint), "spec": format_spec(spec),
            "source_meta": {k: v for k, v in load_meta(args.checkpoint).items() if k != "history"}}
    check_writable(args.out)
    save_model(dense, args.out, meta, load_tokenizer(args.checkpoint), force=args.force)
    print(f"wrote {args.out}: spec {format_spec(spec)}, ffn sizes {list(dense.config.ffn_sizes)}, "
          f"{param_count(None, dense.config):,} parameters")
    return 0
