"""matedge info: what a checkpoint holds, per granularity."""

from __future__ import annotations

from edge.cli.common import add_checkpoint, add_eval_tokens
from edge.inputs import int_arg

HELP = "table of S/M/L/XL: parameters, FLOPs/token, validation loss"


def configure(p) -> None:
    add_checkpoint(p)
    add_eval_tokens(p)
    p.add_argument("--seq-len", type=int_arg(2, 1 << 20), default=128, help="evaluation window (default: 128)")


def run(args) -> int:
    from edge.checkpoint import load_any, load_corpus_for, load_meta, load_tokenizer
    from edge.evaluate import bits_per_byte, eval_loss
    from edge.spec import flops_per_token, param_count, uniform_specs
    from edge.texttable import format_table

    model, folder = load_any(args.checkpoint)
    config, meta = model.config, load_meta(folder)
    if not config.is_universal:
        print(f"{folder}: a dense submodel sliced at {','.join(config.spec or ())} "
              f"({param_count(None, config):,} parameters)")
        return 0
    corpus = load_corpus_for(folder)
    byte_tokens = load_tokenizer(folder).name == "bytes"  # bits/byte only where a token is a byte
    rows = []
    for g, spec in uniform_specs(config).items():
        loss = eval_loss(model, corpus.val, spec, min(args.seq_len, config.max_context), args.eval_tokens)
        rows.append([g, config.widths[g], param_count(spec, config), flops_per_token(spec, config),
                     loss, bits_per_byte(loss) if byte_tokens else "-"])
    print(f"{folder}: preset {meta.get('preset', '?')}, {config.n_layers} layers, d_model {config.d_model}, "
          f"d_ff {config.d_ff}, trained {meta.get('step', '?')} steps")
    print(format_table(["granularity", "d_ff", "params", "FLOPs/token", "val loss", "bits/byte"], rows))
    return 0
