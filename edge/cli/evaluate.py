"""matedge eval: validation loss of a spec and its consistency with XL."""

from __future__ import annotations

from edge.cli.common import add_checkpoint, add_eval_tokens
from edge.inputs import int_arg

HELP = "validation loss/perplexity of a spec and its consistency with XL"


def configure(p) -> None:
    add_checkpoint(p)
    p.add_argument("--spec", required=True, help='per-layer granularities, e.g. "XL" or "S,S,M,M,L,XL"')
    add_eval_tokens(p)
    p.add_argument("--seq-len", type=int_arg(2, 1 << 20), default=128, help="evaluation window (default: 128)")


def run(args) -> int:
    from edge.checkpoint import load_any, load_corpus_for, load_tokenizer
    from edge.evaluate import bits_per_byte, consistency, eval_loss, perplexity
    from edge.errors import MatEdgeError
    from edge.spec import format_spec, parse_spec, param_count
    from edge.texttable import format_table

    model, folder = load_any(args.checkpoint)
    if not model.config.is_universal:
        raise MatEdgeError(f"{folder} is a sliced dense model; evaluate the universal checkpoint it came from")
    spec = parse_spec(args.spec, model.config)
    corpus = load_corpus_for(folder)
    seq = min(args.seq_len, model.config.max_context)
    loss = eval_loss(model, corpus.val, spec, seq, args.eval_tokens)
    xl = (model.config.granularity_names[-1],) * model.config.n_layers
    cons = consistency(model, xl, model, spec, corpus.val, seq, args.eval_tokens)
    bpb = bits_per_byte(loss) if load_tokenizer(folder).name == "bytes" else "-"  # only byte tokens are bytes
    print(format_table(["spec", "params", "val loss", "perplexity", "bits/byte", "agree w/ XL %", "KL(XL||spec)"],
                       [[format_spec(spec), param_count(spec, model.config), loss, perplexity(loss),
                         bpb, cons["agreement_pct"], cons["kl"]]]))
    return 0
