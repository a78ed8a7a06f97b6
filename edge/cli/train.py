"""matedge train: train (or resume) the universal model."""

from __future__ import annotations

from edge.config import PRESETS, default_checkpoint

HELP = "train the universal MatFormer model (resumes an unfinished run in --out)"
DESCRIPTION = """\
Train the universal MatFormer model with the paper's regimes and save a checkpoint folder
(model.safetensors + config.json + meta.json + train_state.pt for resuming).

  regime sample        one granularity per step, drawn with --probs (paper v2; default uniform)
  regime sum           the losses of all granularities summed every step (paper v1)
  regime random-layer  one granularity per layer per step (OFA-style, for comparison)

Several processes: torchrun --nproc_per_node 2 -m edge train ... (DDP, gloo on CPU)."""


def configure(p) -> None:
    p.add_argument("--preset", default="small", choices=sorted(PRESETS), help="model size (default: small)")
    p.add_argument("--steps", type=int, help="optimizer steps (default: per preset)")
    p.add_argument("--data", help="a UTF-8 text file or a folder of them (default: Python's own docs and sources)")
    p.add_argument("--out", default=str(default_checkpoint()), help=f"checkpoint folder (default: {default_checkpoint()})")
    p.add_argument("--regime", default="sample", choices=["sample", "sum", "random-layer"])
    p.add_argument("--probs", help="sampling probabilities per granularity, e.g. .17,.20,.22,.41")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seq-len", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="CPU threads (default: one per core; 1 is faster on a busy machine)")
    p.add_argument("--eval-every", type=int, default=250, help="steps between validation passes")
    p.add_argument("--no-resume", action="store_true", help="start over even if --out holds a run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _probs(text: str | None, names: tuple[str, ...]) -> tuple[float, ...] | None:
    """One non-negative sampling weight per granularity of the model being trained (``names``)."""
    from edge.errors import MatEdgeError

    if not text:
        return None
    try:
        probs = tuple(float(v) for v in text.split(","))
    except ValueError:
        probs = ()
    if len(probs) != len(names) or any(p < 0 for p in probs) or sum(probs) <= 0:
        # the paper's skew towards the largest granularity where it applies, else uniform
        example = ".17,.20,.22,.41" if len(names) == 4 else ",".join(["1"] * len(names))
        raise MatEdgeError(f"--probs {text!r}: need {len(names)} non-negative numbers for {','.join(names)}, "
                           f"e.g. {example}")
    return probs


def run(args) -> int:
    from edge.config import MatFormerConfig
    from edge.texttable import format_table
    from edge.train import TrainArgs, train

    names = MatFormerConfig.from_preset(args.preset).granularity_names
    targs = TrainArgs(preset=args.preset, steps=args.steps, data=args.data, out=args.out, regime=args.regime,
                      probs=_probs(args.probs, names), batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr,
                      seed=args.seed, threads=args.threads, eval_every=args.eval_every, resume=not args.no_resume,
                      progress=not args.quiet)
    meta = train(targs)
    if "history" in meta and meta["history"]:
        val = meta["history"][-1]["val_loss"]
        print(format_table(["granularity", "val loss"], [[g, v] for g, v in val.items()]))
        print(f"model in {args.out}: {meta['step']} steps, {meta.get('train_seconds', 0):.0f} s of training")
    return 0
