"""matedge convert: a dense (imported) model -> a universal MatFormer checkpoint."""

from __future__ import annotations

from edge.cli.common import add_eval_tokens
from edge.inputs import int_arg

HELP = "make a dense model elastic: importance-ordered FFN units, nested granularities (XL unchanged)"
DESCRIPTION = """\
Measures each FFN hidden unit's importance on calibration text (training documents of the
default corpus, or --data; never the held-out documents that eval scores), reorders the units so
every prefix keeps the most important ones, and declares the granularities (default S/M/L/XL =
1/8, 1/4, 1/2, 1 of d_ff). XL is the dense model itself (same logits). Without training the small
granularities are poor: follow with the nested distillation fine-tune,

  matedge convert runs/smollm2 --out runs/smollm2-elastic
  matedge train --init runs/smollm2-elastic --distill --out runs/smollm2-mat --threads 1"""


def configure(p) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a dense checkpoint (e.g. from `matedge import`)")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--ordering", default="energy", choices=["energy", "activation"],
                   help="unit importance: energy = sqrt(E[h^2]) * |W_down column| (default), activation = E|h|")
    p.add_argument("--fractions", default="1/8,1/4,1/2,1", help="granularity widths as fractions of d_ff (default: 1/8,1/4,1/2,1)")
    p.add_argument("--names", help="granularity names, one per fraction (default: S,M,L,XL)")
    p.add_argument("--calib-tokens", type=int_arg(1, 1 << 30), default=8192, help="calibration tokens (default: 8192)")
    p.add_argument("--seq-len", type=int_arg(2, 1 << 20), default=256, help="window length (default: 256)")
    p.add_argument("--threads", type=int_arg(1, 256), help="CPU threads (default: torch's)")
    add_eval_tokens(p)


def run(args) -> int:
    from pathlib import Path

    import torch

    from edge.checkpoint import load_corpus_for, load_meta, load_model, load_tokenizer, save_model
    from edge.cli.common import check_output_folder
    from edge.convert import convert, parse_fractions
    from edge.errors import MatEdgeError
    from edge.evaluate import eval_loss, perplexity
    from edge.texttable import format_table

    if args.threads:
        torch.set_num_threads(args.threads)
    fractions, names = parse_fractions(args.fractions, args.names)
    if args.calib_tokens < args.seq_len:
        raise MatEdgeError(f"--calib-tokens {args.calib_tokens} (allowed: at least --seq-len {args.seq_len})")
    check_output_folder(args.out)
    model = load_model(args.checkpoint)
    corpus = load_corpus_for(Path(args.checkpoint))
    elastic, info = convert(model, corpus.train, fractions, names, args.ordering, args.seq_len, args.calib_tokens)
    source = load_meta(args.checkpoint)
    meta = {"preset": "converted", "converted_from": str(args.checkpoint), "convert": info,
            "source_meta": source, "train_args": source.get("train_args", {})}
    save_model(elastic, Path(args.out), meta, load_tokenizer(args.checkpoint))
    print(f"wrote {args.out}: {len(names)} granularities {dict(elastic.config.widths)} ordered by {args.ordering} "
          f"on {info['calibration_tokens']} calibration tokens")
    if args.eval_tokens > 0:
        seq = min(args.seq_len, model.config.max_context)
        base = eval_loss(model, corpus.val, None, seq, args.eval_tokens)
        rows = [["original", base, perplexity(base), 1.0]]
        for g in names:
            loss = eval_loss(elastic, corpus.val, (g,) * elastic.config.n_layers, seq, args.eval_tokens)
            rows.append([g, loss, perplexity(loss), perplexity(loss) / perplexity(base)])
        print(format_table(["granularity", "val loss", "perplexity", "x original"], rows))
    return 0
