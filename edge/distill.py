"""Nested distillation fine-tune: ``matedge train --init CKPT --distill``.

The student is a converted (elastic) checkpoint; the teacher is a frozen copy of a model run in
full, by default the ``--init`` checkpoint's own XL (= the original dense model, which convert
leaves unchanged). Every step runs the teacher once and the student at each granularity on the
same batch, and minimises KL(teacher || student_g) summed over the granularities ("sum", paper
v1; ``probs`` weighs them, default equal) or for one granularity drawn with ``probs`` ("sample",
v2). All granularities are prefixes of the same tensors, so the result stays truly nested: one
set of weights, any Mix'n'Match spec.

bf16 autocast is on where the CPU has native bf16 (AVX-512 BF16 or AMX: a linear layer's
forward+backward measured 1.9x faster than fp32) and off elsewhere (10.7x slower on an AVX2-only
CPU); ``--bf16``/``--no-bf16`` override. The KL runs in fp32 either way (edge.kl). With
``compile`` the blocks run through torch.compile (edge.compiled: 14.4 -> 10.0 s a step measured).
Resumable (``train_state.pt`` beside the weights) and runs under torchrun like training.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from edge import checkpoint as ckpt
from edge.data import random_batch
from edge.compiled import CompiledForward
from edge.errors import MatEdgeError
from edge.evaluate import eval_loss
from edge.fsguard import check_dir_destination
from edge.kl import kl_to_teacher, teacher_targets
from edge.model import MatFormerLM, lm_loss
from edge.train import STATE, _dist_info, _resume, lr_at  # lr_at: the same warm-up + cosine schedule

REGIMES = ("sum", "sample")


@dataclass
class DistillArgs:
    init: str = ""
    out: str = ""
    teacher: str | None = None  # default: the init checkpoint at full width
    distill: bool = True  # False: plain next-token loss on the text (no teacher)
    steps: int = 150
    batch_size: int = 4
    seq_len: int = 256
    lr: float = 4e-4  # 30-step proxies: better than 2e-4 at every granularity; 8e-4 moved XL 19% off
    warmup: int | None = None  # default: a tenth of the steps
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    regime: str = "sum"
    probs: tuple[float, ...] | None = None  # per granularity: loss weight (sum) or draw probability (sample)
    train_embeddings: bool = False  # the tied embedding is shared by every granularity; 21% of SmolLM2
    bf16: bool | None = None  # None: on where the CPU has native bf16 (native_bf16())
    compile: bool = False  # torch.compile each block (edge.compiled; the CLI turns it on where it can)
    eval_every: int = 50  # 0: never (a real model's validation pass costs minutes; see bench/)
    eval_tokens: int = 4096
    save_every: int = 10
    seed: int = 0
    threads: int | None = None
    resume: bool = True
    force: bool = False  # replace an --out folder this tool did not write (as TrainArgs.force)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.bf16 is None:
            self.bf16 = native_bf16()
        if self.warmup is None:
            self.warmup = max(1, self.steps // 10)
        if self.regime not in REGIMES:
            raise MatEdgeError(f"--regime {self.regime!r} with --init (allowed: {', '.join(REGIMES)})")
        for name in ("steps", "batch_size", "seq_len"):
            if getattr(self, name) < 1:
                raise MatEdgeError(f"--{name.replace('_', '-')} {getattr(self, name)} (allowed: a positive integer)")


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX), where autocast pays off."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private: absent means no
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def _autocast(on: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if on else contextlib.nullcontext()


def _load_student(a: DistillArgs) -> MatFormerLM:
    model = ckpt.load_model(a.init)
    if not model.config.is_universal or len(model.config.granularity_names) < 2:
        raise MatEdgeError(f"--init {a.init!r} has no nested granularities: make it elastic first "
                           f"(matedge convert {a.init} --out FOLDER)")
    return model


def _step(net, model, teacher, x, y, names, a: DistillArgs, gen, world) -> tuple[float, str]:
    """Forward/backward of one step (gradients accumulated per granularity to bound memory)."""
    L = model.config.n_layers
    w = torch.tensor(a.probs or [1.0] * len(names), dtype=torch.float64)
    w = w / w.sum()  # (G,): each granularity's share of the loss, or its chance of being drawn
    if a.regime == "sample":
        k = int(torch.multinomial(w, 1, generator=gen))
        names, w = [names[k]], torch.ones(1, dtype=torch.float64)
    targets = None
    if teacher is not None:
        with torch.no_grad(), _autocast(a.bf16):
            t_logits = teacher(x)  # (B, T, V)
        targets = teacher_targets(t_logits)  # probabilities (B*T, V) fp32 and -entropy, once a step
    total = 0.0
    for k, g in enumerate(names):
        sync = contextlib.nullcontext() if world == 1 or k == len(names) - 1 else net.no_sync()
        with sync:
            with _autocast(a.bf16):
                logits = net(x, (g,) * L)
            loss = kl_to_teacher(logits, targets) if targets is not None else lm_loss(logits.float(), y)
            (loss * float(w[k])).backward()
        total += loss.item() * float(w[k])
    return total, "all" if len(names) > 1 else names[0]


def _restore(out: Path, a: DistillArgs, model, opt, gens) -> tuple[int, list, float]:
    """Resume from ``out`` when it holds a run: (start step, history, seconds so far)."""
    if not (a.resume and (out / STATE).exists()):
        return 0, [], 0.0
    start, history = _resume(out, model, opt, gens)  # training's checked loader: one line if damaged
    return start, history, ckpt.load_meta(out).get("train_seconds", 0.0)


def _save(out: Path, a: DistillArgs, model, opt, gens, tokenizer, progress: dict) -> None:
    """Atomically write the student, its meta and the optimizer state for resuming."""
    source = ckpt.load_meta(a.init)
    meta = {"preset": "distilled" if a.distill else "fine-tuned", "init": str(a.init),
            "teacher": str(a.teacher or a.init) if a.distill else None, "distill_args": asdict(a),
            "train_args": source.get("train_args", {}), "source_meta": source, **progress}
    with ckpt.atomic_dir(out, force=a.force) as tmp:
        ckpt.write_model(model, tmp, meta, tokenizer)
        torch.save({"optimizer": opt.state_dict(), "step": progress["step"],
                    "gens": [g.get_state() for g in gens]}, tmp / STATE)


def distill(a: DistillArgs) -> dict:
    """Fine-tune (or resume) ``a.init`` into ``a.out``; returns the final meta dict."""
    check_dir_destination(a.out, a.force)  # before minutes of fine-tuning, not at the first save (as train does)
    rank, world = _dist_info()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    out = Path(a.out)
    model = _load_student(a)
    if a.seq_len > model.config.max_context:  # before the corpus is tokenized (seconds on a real model)
        raise MatEdgeError(f"--seq-len {a.seq_len} exceeds the model's max_context={model.config.max_context}")
    tokenizer = ckpt.load_tokenizer(a.init)
    corpus = ckpt.load_corpus_for(Path(a.init))
    teacher = None
    if a.distill:
        teacher = ckpt.load_model(a.teacher or a.init).requires_grad_(False).eval()
        if teacher.config.vocab_size != model.config.vocab_size:
            raise MatEdgeError(f"teacher vocabulary {teacher.config.vocab_size} != student {model.config.vocab_size}")
    model.tok_emb.requires_grad_(a.train_embeddings)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.95), weight_decay=a.weight_decay)
    data_gen = torch.Generator().manual_seed(a.seed * 1000 + rank)
    gran_gen = torch.Generator().manual_seed(a.seed)
    start, history, prev_seconds = _restore(out, a, model, opt, (data_gen, gran_gen))
    if start >= a.steps:
        print(f"{out}: already fine-tuned for {start} steps; reusing it (--no-resume to start over)")
        return ckpt.load_meta(out)
    student = CompiledForward(model) if a.compile else model  # same parameters, fused kernels
    if teacher is not None and a.compile:
        teacher = CompiledForward(teacher)
    net = torch.nn.parallel.DistributedDataParallel(student) if world > 1 else student
    names = list(model.config.granularity_names)
    model.train()
    bar = tqdm(range(start, a.steps), initial=start, total=a.steps, disable=not a.progress or rank != 0,
               desc=f"{'distill' if a.distill else 'fine-tune'} ({a.regime})", unit="step", dynamic_ncols=True)
    t0 = time.perf_counter()

    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, a)
        x, y = random_batch(corpus.train, a.batch_size, a.seq_len, data_gen)
        opt.zero_grad(set_to_none=True)
        loss, g = _step(net, model, teacher, x, y, names, a, gran_gen, world)
        torch.nn.utils.clip_grad_norm_(params, a.grad_clip)
        opt.step()
        bar.set_postfix(loss=f"{loss:.4f}", g=g)
        done = step + 1
        if a.eval_every > 0 and (done % a.eval_every == 0 or done == a.steps):
            val = {n: eval_loss(model, corpus.val, (n,) * model.config.n_layers, a.seq_len, a.eval_tokens)
                   for n in names}
            model.train()
            history.append({"step": done, "train_loss": loss, "val_loss": val})
            if rank == 0:
                bar.write(f"step {done}: val loss " + "  ".join(f"{k} {v:.4f}" for k, v in val.items()), )
        if rank == 0 and (done % a.save_every == 0 or done == a.steps):
            meta = {"step": done, "corpus": corpus.describe(), "history": history, "world_size": world,
                    "train_seconds": prev_seconds + time.perf_counter() - t0}
            _save(out, a, model, opt, (data_gen, gran_gen), tokenizer, meta)
    if world > 1:
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()
    model.eval()
    return ckpt.load_meta(out)
