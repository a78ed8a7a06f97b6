"""Training the universal model with the MatFormer regimes.

Regimes (paper, Devvrit et al. 2023):
- ``sample`` (v2): each step trains one granularity drawn with ``probs`` (default uniform).
- ``sum`` (v1): each step sums the losses of every granularity (equal weights 1/G).
- ``random-layer``: each step draws a granularity per layer (OFA-style; for comparison only).

Runs the same under ``torchrun --nproc_per_node N`` (DistributedDataParallel, gloo on CPU):
every rank draws the same granularity (a shared generator) and its own data (seed + rank).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from edge import checkpoint as ckpt
from edge.config import MatFormerConfig
from edge.data import Corpus, load_corpus, random_batch
from edge.errors import MatEdgeError
from edge.evaluate import eval_loss
from edge.fsguard import check_dir_destination
from edge.model import MatFormerLM, lm_loss

STATE = "train_state.pt"
REGIMES = ("sample", "sum", "random-layer")

# Per-preset training defaults: `small` is sized to train in <= 15 minutes on 2 CPU cores.
TRAIN_DEFAULTS = {
    "tiny": dict(steps=150, batch_size=16, seq_len=64, lr=3e-3, warmup=20),
    "small": dict(steps=800, batch_size=16, seq_len=128, lr=2e-3, warmup=50),
}


@dataclass
class TrainArgs:
    preset: str = "small"
    steps: int | None = None
    batch_size: int | None = None
    seq_len: int | None = None
    lr: float | None = None
    warmup: int | None = None
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    regime: str = "sample"
    probs: tuple[float, ...] | None = None  # per granularity for `sample`; None = uniform
    eval_every: int = 250
    eval_tokens: int = 32_768
    save_every: int = 500
    seed: int = 0
    threads: int | None = None  # torch intra-op threads (None: torch's default, one per core)
    data: str | None = None
    out: str = field(default_factory=lambda: str(ckpt.default_checkpoint()))
    resume: bool = True
    force: bool = False  # replace an --out folder this tool did not write
    progress: bool = True
    config_overrides: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        defaults = TRAIN_DEFAULTS.get(self.preset, TRAIN_DEFAULTS["small"])
        for k, v in defaults.items():
            if getattr(self, k) is None:
                setattr(self, k, v)
        if self.regime not in REGIMES:
            raise MatEdgeError(f"unknown regime {self.regime!r} (allowed: {', '.join(REGIMES)})")
        for name in ("steps", "batch_size", "seq_len"):
            if getattr(self, name) < 1:
                raise MatEdgeError(f"{name}={getattr(self, name)} (allowed: a positive integer)")
        if not (math.isfinite(self.lr) and 0 < self.lr <= 10):
            raise MatEdgeError(f"lr={self.lr} (allowed: a number in (0, 10])")


def lr_at(step: int, args: TrainArgs) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio * lr."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    t = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def step_loss(model, x, y, config: MatFormerConfig, args: TrainArgs, gen: torch.Generator):
    """Loss of one step under the chosen regime, and the granularity it trained (for logging)."""
    names = config.granularity_names
    L = config.n_layers
    if args.regime == "sum":
        losses = [lm_loss(model(x, (g,) * L), y) for g in names]
        return sum(losses) / len(losses), "all"
    if args.regime == "random-layer":
        idx = torch.randint(0, len(names), (L,), generator=gen).tolist()
        return lm_loss(model(x, tuple(names[i] for i in idx)), y), "mixed"
    probs = torch.tensor(args.probs or [1.0] * len(names), dtype=torch.float64)
    g = names[int(torch.multinomial(probs / probs.sum(), 1, generator=gen))]
    return lm_loss(model(x, (g,) * L), y), g


def _dist_info() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _param_digest(model: torch.nn.Module) -> str:
    import hashlib

    h = hashlib.sha256()
    for v in model.state_dict().values():
        h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def validate(model: MatFormerLM, corpus: Corpus, args: TrainArgs) -> dict[str, float]:
    """Validation loss of every uniform granularity."""
    L = model.config.n_layers
    return {g: eval_loss(model, corpus.val, (g,) * L, args.seq_len, args.eval_tokens)
            for g in model.config.granularity_names}


def _save(model, opt, step, gens, args, history, corpus, out, extra=None):
    meta = {"preset": args.preset, "step": step, "train_args": {k: v for k, v in asdict(args).items()},
            "corpus": corpus.describe(), "corpus_sha256": corpus.sha256, "history": history,
            **(extra or {})}
    with ckpt.atomic_dir(out, force=args.force) as tmp:
        ckpt.write_model(model, tmp, meta)
        torch.save({"optimizer": opt.state_dict(), "step": step,
                    "gens": [g.get_state() for g in gens]}, tmp / STATE)


def _resume(out: Path, model, opt, gens) -> tuple[int, list]:
    """Load weights, optimizer and generator states from ``out``; (step, history).

    train_state.pt is read with weights_only=True (no pickle code runs); anything unreadable or
    inconsistent in it is one CheckpointError that suggests --no-resume."""
    model.load_state_dict(ckpt.load_model(out).state_dict())
    path = out / STATE
    try:
        if not path.is_file():
            raise ValueError("not a regular file")
        state = torch.load(path, weights_only=True)
        opt.load_state_dict(state["optimizer"])
        start = state["step"]
        if not isinstance(start, int) or isinstance(start, bool) or start < 0:
            raise ValueError(f"step = {start!r}")
        for g, s in zip(gens, state["gens"], strict=True):
            g.set_state(s)
    except Exception as e:  # noqa: BLE001 - torch.load raises many types for a damaged file
        raise ckpt.CheckpointError(f"{path} is unreadable or does not match the model ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0][:160] if str(e) else ''}); pass --no-resume to "
                                   f"start over") from None
    return start, ckpt.load_meta(out).get("history", [])


def train(args: TrainArgs) -> dict:
    """Train (or resume) and save to ``args.out``; returns the final meta dict."""
    check_dir_destination(args.out, args.force)  # before minutes of training, not at the first save
    rank, world = _dist_info()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = MatFormerConfig.from_preset(args.preset, **args.config_overrides)
    if args.seq_len > config.max_context:
        raise MatEdgeError(f"seq_len={args.seq_len} exceeds the preset's max_context={config.max_context}")
    corpus = load_corpus(Path(args.data) if args.data else None)
    model = MatFormerLM(config)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95),
                            weight_decay=args.weight_decay)
    data_gen = torch.Generator().manual_seed(args.seed * 1000 + rank)
    gran_gen = torch.Generator().manual_seed(args.seed)  # identical on every rank
    out, start, history = Path(args.out), 0, []
    if args.resume and (out / STATE).exists():
        start, history = _resume(out, model, opt, (data_gen, gran_gen))
        data_gen.manual_seed(args.seed * 1000 + rank + 7919 * start)  # fresh windows per rank
    if start >= args.steps and world == 1:  # already trained: reuse it as it is
        print(f"{out}: already trained for {start} steps; reusing it (--no-resume to start over)")
        return ckpt.load_meta(out)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    model.train()
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, disable=not args.progress or rank != 0,
               desc=f"train {args.preset} ({args.regime})", unit="step", dynamic_ncols=True)
    t0, tokens = time.perf_counter(), 0
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args)
        x, y = random_batch(corpus.train, args.batch_size, args.seq_len, data_gen)
        loss, g = step_loss(net, x, y, config, args, gran_gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        tokens += x.numel() * world
        bar.set_postfix(loss=f"{loss.item():.3f}", g=g, tok_s=f"{tokens / (time.perf_counter() - t0):.0f}")
        done = step + 1
        if done % args.eval_every == 0 or done == args.steps:
            model.eval()
            val = validate(model, corpus, args)
            model.train()
            history.append({"step": done, "train_loss": loss.item(), "val_loss": val})
            if rank == 0:
                bar.write(f"step {done}: val loss " + "  ".join(f"{k} {v:.4f}" for k, v in val.items()))
        if rank == 0 and (done % args.save_every == 0 or done == args.steps):
            _save(model, opt, done, (data_gen, gran_gen), args, history, corpus, out)
    prev_seconds = ckpt.load_meta(out).get("train_seconds", 0.0) if start else 0.0
    extra = {"train_seconds": prev_seconds + time.perf_counter() - t0, "world_size": world}
    if world > 1:  # prove the replicas stayed identical
        digests = [None] * world
        dist.all_gather_object(digests, _param_digest(model))
        extra["replica_digests"] = digests
    if rank == 0:
        _save(model, opt, args.steps, (data_gen, gran_gen), args, history, corpus, out, extra)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    model.eval()
    return ckpt.load_meta(out) if rank == 0 else extra
