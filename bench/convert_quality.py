"""Perplexity per granularity after each step of the dense -> MatFormer recipe, on held-out text.

Rows: the original (imported) model; units in stored order; importance-ordered by activation and
by energy (what `matedge convert` does); energy + the per-granularity least-squares refit of
W_down (edge.refit; dense copies per granularity, not nested); and each fine-tuned checkpoint
given with --tuned (e.g. `matedge train --init ... --distill`). Held-out text: the validation
documents of the default corpus, tokenized with the model's tokenizer; calibration uses training
documents only.

  python bench/convert_quality.py runs/smollm2 --tuned runs/smollm2-mat --eval-tokens 8192
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.checkpoint import load_corpus_for, load_meta, load_model  # noqa: E402
from edge.convert import convert, make_elastic  # noqa: E402
from edge.evaluate import eval_loss  # noqa: E402
from edge.refit import refit_dense, refit_w_down  # noqa: E402
from edge.texttable import format_table  # noqa: E402

NAMES = ("S", "M", "L", "XL")
FRACTIONS = (1 / 8, 1 / 4, 1 / 2, 1.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dense", help="the imported dense checkpoint")
    p.add_argument("--elastic", help="an existing `matedge convert` output for the energy row (else converted here)")
    p.add_argument("--tuned", action="append", default=[], help="a fine-tuned elastic checkpoint (repeatable)")
    p.add_argument("--rows", default="stored,activation,energy,refit",
                   help="training-free rows to compute (comma list; '' for none)")
    p.add_argument("--eval-tokens", type=int, default=8192)
    p.add_argument("--calib-tokens", type=int, default=8192)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    dense = load_model(a.dense)
    corpus = load_corpus_for(Path(a.dense))
    L, seq = dense.config.n_layers, a.seq_len

    def ppl(model, spec):
        return float(torch.tensor(eval_loss(model, corpus.val, spec, seq, a.eval_tokens)).exp())

    t0 = time.perf_counter()
    base = ppl(dense, None)
    rows = [["original (dense)", "-", "-", "-", f"{base:.2f}", "-"]]
    print(f"original: perplexity {base:.2f} on {a.eval_tokens} held-out tokens ({time.perf_counter() - t0:.0f} s)",
          flush=True)
    wanted = a.rows.split(",") if a.rows else []
    elastic = {}
    if "stored" in wanted:
        elastic["stored"] = make_elastic(dense, [torch.arange(dense.config.d_ff)] * L, FRACTIONS, NAMES)
    for ordering in ("activation", "energy"):
        if ordering == "energy" and a.elastic and ("energy" in wanted or "refit" in wanted):
            elastic["energy"] = load_model(a.elastic)
        elif ordering in wanted or (ordering == "energy" and "refit" in wanted):
            elastic[ordering] = convert(dense, corpus.train, FRACTIONS, NAMES, ordering, seq, a.calib_tokens)[0]
    # XL of a reordered model is the original (equal logits, tested): its perplexity is not re-run.
    for name, model in elastic.items():
        if name in wanted:
            rows.append(_row(f"{name} order", [ppl(model, (g,) * L) for g in NAMES[:-1]] + [base], base))
            print(rows[-1], flush=True)
    if "refit" in wanted:
        m = elastic["energy"]
        vals = [ppl(refit_dense(m, g, refit_w_down(m, corpus.train, g, seq, a.calib_tokens)), None) for g in NAMES[:-1]]
        rows.append(_row("energy + W_down refit (copies)", vals + [base], base))
        print(rows[-1], flush=True)
    for path in a.tuned:
        model = load_model(path)
        meta = load_meta(path)
        label = f"{Path(path).name} ({meta.get('step', '?')} steps, {meta.get('train_seconds', 0) / 60:.0f} min)"
        rows.append(_row(label, [ppl(model, (g,) * L) for g in model.config.granularity_names], base))
        print(rows[-1], flush=True)
    print()
    print(f"perplexity on {a.eval_tokens} held-out tokens ({seq}-token windows), x = ratio to the original "
          f"(aim: L <= 1.3x, M <= 2x, S <= 4x); {time.perf_counter() - t0:.0f} s")
    print(format_table(["recipe step", "S", "M", "L", "XL", "S/M/L x original"], rows))


def _row(label: str, ppls: list[float], base: float) -> list:
    ratios = "/".join(f"{v / base:.2f}" for v in ppls[:3])
    return [label, *(f"{v:.2f}" for v in ppls), ratios]


if __name__ == "__main__":
    main()
