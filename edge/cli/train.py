"""matedge train: train (or resume) the universal model."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge.config import PRESETS, default_checkpoint
from edge.inputs import int_arg

HELP = "train the universal MatFormer model (resumes an unfinished run in --out)"
DESCRIPTION = """\
Train the universal MatFormer model with the paper's regimes and save a checkpoint folder
(model.safetensors + config.json + meta.json + train_state.pt for resuming).

  regime sample        one granularity per step, drawn with --probs (paper v2; default uniform)
  regime sum           the losses of all granularities summed every step (paper v1)
  regime random-layer  one granularity per layer per step (OFA-style, for comparison)

Several processes: torchrun --nproc_per_node 2 -m edge train ... (DDP, gloo on CPU).

Fine-tune an existing elastic checkpoint instead (e.g. one from `matedge convert`):
  --init CKPT --distill   nested distillation: KL to the teacher (default: CKPT at full width,
                          i.e. the original dense model) at every granularity;
                          regime sum (default) or sample; 150 steps of 4 x 256 tokens by default
  --init CKPT             the same with the plain next-token loss instead of a teacher"""


def configure(p) -> None:
    p.add_argument("--preset", default="small", choices=sorted(PRESETS), help="model size (default: small)")
    p.add_argument("--steps", type=int_arg(1, 10**9), help="optimizer steps (default: per preset)")
    p.add_argument("--data", help="a UTF-8 text file or a folder of them (default: Python's own docs and sources)")
    p.add_argument("--out", default=str(default_checkpoint()), help=f"checkpoint folder (default: {default_checkpoint()})")
    p.add_argument("--regime", choices=["sample", "sum", "random-layer"],
                   help="default: sample (sum with --init)")
    p.add_argument("--probs", help="per granularity: sampling probabilities (regime sample), e.g. .17,.20,.22,.41; "
                   "with --init and regime sum, loss weights (default equal)")
    p.add_argument("--batch-size", type=int_arg(1, 1 << 16))
    p.add_argument("--seq-len", type=int_arg(2, 1 << 20))
    p.add_argument("--lr", type=float, help="peak learning rate, in (0, 10] (default: per preset)")
    p.add_argument("--seed", type=int_arg(0, 2**63 - 1), default=0)
    p.add_argument("--threads", type=int_arg(1, 256), help="CPU threads (default: one per core; 1 is faster on a busy machine)")
    p.add_argument("--eval-every", type=int_arg(0, 10**9), help="steps between validation passes (default: 250; 50 with --init, where 0 means never)")
    p.add_argument("--no-resume", action="store_true", help="start over even if --out holds a run")
    p.add_argument("--force", action="store_true", help="replace an --out folder that matedge did not write")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--init", metavar="CKPT", help="start from this elastic checkpoint (fine-tune; see below)")
    p.add_argument("--distill", action="store_true", help="with --init: distil from the teacher (nested KD)")
    p.add_argument("--teacher", metavar="CKPT", help="with --distill: teacher checkpoint (default: --init at full width)")
    p.add_argument("--train-embeddings", action="store_true", help="with --init: also train the (tied) embedding")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="with --init: bf16 autocast (default: on where the CPU has native bf16, AVX-512 BF16 "
                        "or AMX, where it is ~2x faster; off elsewhere, where it is ~10x slower)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="with --init: torch.compile each block (~30 s once, then ~1.4x faster steps; "
                        "default: on where a C++ compiler is installed and for runs of 20 steps or more)")


def _probs(text: str | None, names: tuple[str, ...]) -> tuple[float, ...] | None:
    """One non-negative sampling weight per granularity of the model being trained (``names``)."""
    import math

    from edge.errors import MatEdgeError

    if not text:
        return None
    try:
        probs = tuple(float(v) for v in text.split(","))
    except ValueError:
        probs = ()
    if len(probs) != len(names) or not all(math.isfinite(p) and 0 <= p <= 1e6 for p in probs) or sum(probs) <= 0:
        # the paper's skew towards the largest granularity where it applies, else uniform
        example = ".17,.20,.22,.41" if len(names) == 4 else ",".join(["1"] * len(names))
        raise MatEdgeError(f"--probs {text!r}: need {len(names)} finite non-negative numbers for {','.join(names)}, "
                           f"e.g. {example}")
    return probs


def run(args) -> int:
    from edge.config import MatFormerConfig
    from edge.texttable import format_table

    if args.init or args.distill or args.teacher:
        return _fine_tune(args)
    from edge.train import TrainArgs, train

    names = MatFormerConfig.from_preset(args.preset).granularity_names
    targs = TrainArgs(preset=args.preset, steps=args.steps, data=args.data, out=args.out, regime=args.regime or "sample",
                      probs=_probs(args.probs, names), batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr,
                      seed=args.seed, threads=args.threads, eval_every=args.eval_every or 250, resume=not args.no_resume,
                      force=args.force, progress=not args.quiet)
    meta = train(targs)
    if "history" in meta and meta["history"]:
        val = meta["history"][-1]["val_loss"]
        print(format_table(["granularity", "val loss"], [[g, v] for g, v in val.items()]))
        print(f"model in {args.out}: {meta['step']} steps, {meta.get('train_seconds', 0):.0f} s of training")
    return 0


def _fine_tune(args) -> int:
    """``--init CKPT [--distill]``: the nested fine-tune of edge.distill."""
    from edge import compiled
    from edge.distill import DistillArgs, distill
    from edge.errors import MatEdgeError
    from edge.texttable import format_table

    if not args.init:
        raise MatEdgeError("--distill and --teacher need --init CKPT (an elastic checkpoint from `matedge convert`)")
    if args.out == str(default_checkpoint()) or args.out == args.init:
        raise MatEdgeError(f"--out {args.out!r}: give a new folder for the fine-tuned model (not the default model or --init)")
    from edge.checkpoint import load_config

    if args.compile and not compiled.available():
        raise MatEdgeError("--compile needs a C++ compiler on PATH (g++, c++ or clang++); use --no-compile")
    names = load_config(Path(args.init)).granularity_names
    given = {k: v for k, v in dict(steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr,
                                   threads=args.threads).items() if v is not None}
    dargs = DistillArgs(init=args.init, out=args.out, teacher=args.teacher, distill=args.distill, regime=args.regime or "sum",
                        probs=_probs(args.probs, names),
                        train_embeddings=args.train_embeddings, bf16=args.bf16, seed=args.seed,
                        compile=compiled.worth_it(args.steps or DistillArgs.steps) if args.compile is None
                        else args.compile,
                        eval_every=50 if args.eval_every is None else args.eval_every,
                        resume=not args.no_resume, force=args.force, progress=not args.quiet, **given)
    meta = distill(dargs)
    if meta.get("history"):
        val = meta["history"][-1]["val_loss"]
        print(format_table(["granularity", "val loss"], [[g, v] for g, v in val.items()]))
    print(f"model in {args.out}: {meta.get('step')} steps, {meta.get('train_seconds', 0):.0f} s of fine-tuning")
    return 0

