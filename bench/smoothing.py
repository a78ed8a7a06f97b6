"""What activation smoothing (exporters/smoothing.py) buys dynamic int8, per granularity.

Each uniform spec of a checkpoint is quantized in eager PyTorch exactly as the ExecuTorch exporter
quantizes it (``exporters.executorch._quantize``: torchao dynamic int8 activations, int8
per-channel weights; or 8da4w), once as it is and once smoothed with the exporter's calibration
(the checkpoint's training text), and compared with fp32 on held-out text: greedy (argmax)
agreement and KL(fp32 || quantized) per token, teacher-forced. No artifact is written; the
exporters' parity gate on real runtimes is in `matedge export` / `matedge build`.

  python bench/smoothing.py runs/smollm2-mat-c [--specs S,M,L,XL] [--precisions int8,8da4w] [--tokens 512]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.checkpoint import load_corpus_for, load_model  # noqa: E402
from edge.slicing import slice_model  # noqa: E402
from edge.spec import parse_spec  # noqa: E402
from edge.texttable import format_table  # noqa: E402
from exporters.executorch import _quantize  # noqa: E402
from exporters.smoothing import CALIBRATION_TOKENS, smoothed  # noqa: E402


def quantized_logits(model, precision: str, tokens: torch.Tensor, calibration: torch.Tensor | None):
    """Logits (B, T, V) of ``model`` quantized at ``precision``, smoothed first when calibrated."""
    model = copy.deepcopy(model)
    if calibration is not None:
        with smoothed(model, calibration, head="separate"):  # as the .pte exporter does
            model = copy.deepcopy(model)  # keep the smoothed weights past the context's exact undo
    _quantize(model, precision)  # finds the MatFormerLM (the model itself) and its linears
    with torch.no_grad():
        return model(tokens).double()


def compare(ref: torch.Tensor, out: torch.Tensor) -> tuple[float, float]:
    """(greedy agreement %, mean KL(ref || out) in nats) over every position."""
    lp, lq = ref.log_softmax(-1), out.log_softmax(-1)
    kl = (lp.exp() * (lp - lq)).sum(-1).mean()
    return 100 * float((ref.argmax(-1) == out.argmax(-1)).double().mean()), float(kl)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a universal (MatFormer) checkpoint folder")
    p.add_argument("--specs", default="S,M,L,XL", help="uniform granularities to compare (comma list)")
    p.add_argument("--precisions", default="int8,8da4w", help="ExecuTorch precisions (comma list)")
    p.add_argument("--tokens", type=int, default=512, help="held-out tokens (rows of at most the model's context)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(Path(args.checkpoint)).eval()
    corpus = load_corpus_for(Path(args.checkpoint))
    L = min(args.tokens, model.config.max_context)
    tokens = corpus.val[:args.tokens // L * L].view(-1, L).long()
    calibration = corpus.train[:CALIBRATION_TOKENS]
    rows = []
    for precision in args.precisions.split(","):
        for name in args.specs.split(","):
            dense = slice_model(model, parse_spec(name, model.config)).eval()
            with torch.no_grad():
                ref = dense(tokens).double()
            plain = compare(ref, quantized_logits(dense, precision, tokens, None))
            smooth = compare(ref, quantized_logits(dense, precision, tokens, calibration))
            rows.append([precision, name, f"{plain[0]:.1f}% / {plain[1]:.4f}", f"{smooth[0]:.1f}% / {smooth[1]:.4f}",
                         f"{plain[1] / smooth[1]:.2f}x"])
            print(f"  {precision} {name} done", file=sys.stderr, flush=True)
    print(f"{args.checkpoint}: {tokens.numel()} held-out tokens, teacher-forced; calibration "
          f"{calibration.numel()} training tokens")
    print(format_table(["precision", "spec", "plain: agreement / KL", "smoothed: agreement / KL", "KL plain / smoothed"],
                       rows))


if __name__ == "__main__":
    main()
