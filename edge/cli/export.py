"""matedge export: write a device artifact (+ JSON metadata) for one spec, backend and precision."""

from __future__ import annotations

from edge.cli.common import add_checkpoint
from edge.inputs import SAFE_ID_TEXT, int_arg, is_safe_id

HELP = "export a spec to ExecuTorch (.pte), LiteRT (.tflite) or Core ML (.mlpackage), with a parity check"
DESCRIPTION = """\
Export the dense submodel of SPEC with a static KV cache. A .pte follows ExecuTorch's LLM-runner
convention, forward(tokens[1, T], input_pos[1]) with T dynamic; a .tflite LiteRT-LM's, prefill_<T>
and decode over tokens, input_pos, mask and per-layer KV caches (plus decode_w<N>, attending to the
first N = context/8, /4, /2 cache slots only, which this project's runners use while the position
fits), and OUT/NAME.litertlm beside it packs it with the tokenizer for LiteRT-LM and Google's AI
Edge apps; a .mlpackage has two entry
points, prefill(tokens[1, T]) and decode(token[1, 1], position[1]). Writes
OUT/NAME.<pte|tflite|mlpackage>, OUT/NAME.json (backend, precision, spec, every file with size and
sha256, entry-point signatures, tokenizer, versions, parity) and the checkpoint's tokenizer.json +
tokenizer_config.json.

Backends and precisions:
  executorch  fp32, int8 (dynamic int8 activations, int8 per-channel weights), 8da4w (int4 groups of 32)
  litert      fp32, int8 (dynamic range)
  coreml      fp16, int8 (linear weight quantization), pal4 (4-bit palettization)

Parity (default on): real validation text through eager and the artifact: prefill logits, then 32
greedy decode steps. Core ML off macOS is checked at graph level (coremltools value inference).
Exit code 1 when parity fails (the artifact is still written and the failures are printed)."""


def configure(p) -> None:
    add_checkpoint(p)
    p.add_argument("--spec", help='per-layer granularities, e.g. "XL" or "S,S,M,M,L,XL" '
                                  "(required for a universal checkpoint with several granularities; "
                                  "an imported dense model exports its one granularity)")
    p.add_argument("--backend", required=True, help="executorch | litert | coreml")
    p.add_argument("--precision", help="default: fp32 (executorch, litert) or fp16 (coreml)")
    p.add_argument("--ops", help="executorch only: 'llama' (default: ExecuTorch's LLM custom ops, the cache "
                                 "write and attention over the filled prefix only; ExecuTorch's LLM runner, "
                                 "llama_main, its phone apps, and this project's runners, which load the kernels "
                                 "from the executorch wheel) or 'aten' (plain ops, attention over every cache "
                                 "slot: any ExecuTorch runtime, also one built without the LLM kernels)")
    p.add_argument("--out", required=True, help="output folder (created if needed)")
    p.add_argument("--name", default="model", help="artifact file name without suffix (default: model)")
    p.add_argument("--context", type=int_arg(2, 1 << 20), help="KV-cache length (default: the model's max_context)")
    p.add_argument("--prefill-len", type=int_arg(1, 1 << 20), help="prefill tokens T (default: min(64, context/4))")
    p.add_argument("--no-parity", action="store_true", help="skip the eager-vs-artifact parity check")
    p.add_argument("--force", action="store_true", help="replace OUT/NAME.<suffix> even if matedge did not write it")


def _default_spec(config, folder) -> str | None:
    """The spec to export when --spec is not given: None for a dense (sliced) checkpoint, the one
    granularity of a universal checkpoint that has only one (an imported dense model), else an error."""
    if not config.is_universal:
        return None
    names = config.granularity_names
    if len(names) == 1:
        return names[0]
    from edge.errors import MatEdgeError

    mixed = ",".join(names[i % len(names)] for i in range(min(3, config.n_layers)))
    raise MatEdgeError(f"{folder} is a universal checkpoint with granularities {', '.join(names)}: pass --spec "
                       f"(one name for every layer, e.g. \"{names[-1]}\", or one per layer, e.g. \"{mixed},...\" "
                       f"with {config.n_layers} names)")


def _tensors(specs: list[dict], dtypes: bool = False) -> str:
    """Tensors of an entry point, one per-layer family as one item: 30 layers' K caches print as
    ``kv_cache_k_0..29[1, 3, 2048, 64]`` instead of 30 names (the JSON keeps every one)."""
    import re

    items: list[list] = []  # [prefix, first, last, shape, dtype]; a name without a layer index has first None
    for t in specs:
        found = re.fullmatch(r"(.*_)(\d+)", t["name"])
        prefix, i = (found.group(1), int(found.group(2))) if found else (t["name"], None)
        last = next((it for it in reversed(items) if it[0] == prefix), None)
        if (i is not None and last is not None and last[2] == i - 1 and last[3] == t["shape"]
                and last[4] == t["dtype"]):
            last[2] = i
        else:
            items.append([prefix, i, i, t["shape"], t["dtype"]])
    text = [(p if i is None else f"{p}{i}" if i == j else f"{p}{i}..{j}") + f"{shape}" + (f":{dt}" if dtypes else "")
            for p, i, j, shape, dt in items]
    return ", ".join(text)


def run(args) -> int:
    from edge.checkpoint import load_any, load_corpus_for, load_tokenizer
    from edge.errors import MatEdgeError
    from exporters import _prepare_out, check_request, export_model
    from exporters.parity import summary
    from exporters.logs import runtime_logs_hidden
    from exporters.smoothing import applies

    from exporters.backends import get_backend

    precision = args.precision or get_backend(args.backend).default_precision
    check_request(args.backend, precision, args.ops)
    if not is_safe_id(args.name):
        raise MatEdgeError(f"--name {args.name!r} (allowed: {SAFE_ID_TEXT})")
    _prepare_out(args.out)
    _check_destination(args)
    model, folder = load_any(args.checkpoint)
    spec = args.spec if args.spec is not None else _default_spec(model.config, folder)
    # parity prompts: held-out text in the checkpoint's own tokens (as `matedge build` uses)
    # parity text (validation split) and smoothing calibration (training split), in the model's tokens
    needs_text = not args.no_parity or applies(args.backend, precision) is not None
    corpus = load_corpus_for(folder) if needs_text else None
    print(f"exporting {args.backend} {precision}" + ("" if args.no_parity else ", then the parity check") + " ...",
          flush=True)
    # the converters' progress lines and notices go to a temporary log, named in the error if it fails
    with runtime_logs_hidden(fds=(1, 2), kind="converter"):
        art = export_model(model, args.backend, precision, args.out, spec=spec, context=args.context,
                           prefill_len=args.prefill_len, name=args.name, parity=not args.no_parity,
                           val_stream=None if args.no_parity else corpus.val, tokenizer=load_tokenizer(folder),
                           ops=args.ops, calibration=corpus.train if corpus is not None else None)
    m = art.meta
    print(f"wrote {art.path} ({m['file_size'] / 1e6:.2f} MB, sha256 {m['sha256'][:16]}) and {art.meta_path}")
    others = [f["file"] for role, f in m.get("files", {}).items() if role != "model"]
    if others:
        print(f"  beside it: {', '.join(others)}")
    ops = f" ({m['ops']} ops)" if "ops" in m else ""
    print(f"  {m['backend']} {m['precision']}{ops}, spec {m['spec']}, {m['parameters']:,} parameters, "
          f"context {m['context']}, prefill {m['prefill_len']} tokens, cache {m['cache']}, "
          f"exported in {m['export_seconds']:.1f} s")
    if m.get("smoothing"):
        sm = m["smoothing"]
        print(f"  activation outliers smoothed into the weights before int8 ({sm['folds']} folds, scales "
              f"{sm['smallest_scale']:g}..{sm['largest_scale']:g}, fp32 logits unchanged)")
    for name, ep in m["entry_points"].items():
        print(f"  {name}({_tensors(ep['inputs'], dtypes=True)}) -> {_tensors(ep['outputs'])}")
    if "parity" not in m:
        print("  parity: skipped (--no-parity)")
        return 0
    print(f"  parity ({m['parity']['kind']}): {summary(m['parity'])}")
    return 0 if m["parity"]["passed"] else 1


def _check_destination(args) -> None:
    """Refuse to overwrite OUT/NAME.<suffix> unless its metadata JSON says matedge wrote it."""
    from pathlib import Path

    from edge.errors import MatEdgeError
    from edge.fsguard import check_dir_destination, check_file_destination
    from edge.inputs import read_json
    from exporters import get_backend

    suffix = get_backend(args.backend).suffix
    final = Path(args.out) / f"{args.name}{suffix}"

    def owned(path: Path) -> bool:
        try:
            meta = read_json(path.with_name(f"{args.name}.json"), "artifact metadata")
        except MatEdgeError:
            return False
        return isinstance(meta, dict) and meta.get("file") == path.name and "sha256" in meta

    if final.is_dir() and not final.is_symlink():  # a package (.mlpackage) is a folder
        if not args.force and not owned(final):
            check_dir_destination(final, args.force)  # refused unless matedge's marker is inside
    else:
        check_file_destination(final, owned, args.force)
