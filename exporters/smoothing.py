"""Activation smoothing before dynamic int8 quantization, folded exactly into the weights.

Dynamic int8 (ExecuTorch's int8, LiteRT's dynamic-range int8) quantizes each token's
activation vector with one scale. A few channels of a real model's activations are huge (SmolLM2:
a FFN hidden unit of layer 11 reaches ~2,900 where a typical one stays below 3), so that scale
rounds every other channel to a handful of levels. SmoothQuant (Xiao et al., 2023) moves the range
into the weights: for a linear ``y = W x`` it divides channel j of ``x`` by ``s_j`` and multiplies
column j of ``W`` by it, with ``s_j = max|x_j|^a / max|W[:, j]|^(1-a)`` from calibration text.

Here the division is folded into what produces ``x``, so the graph gains no op:

* attention q/k/v and FFN gate/up inputs: the RMSNorm weight before them;
* the FFN down-projection's input ``silu(gate) * up``: the rows of ``w_up``;
* the LM head's input: the final norm. A head stored apart from the lookup (a .pte keeps two
  copies of a tied table anyway) is scaled alone; a tied table that is stored once (.tflite) has
  its columns scaled and the lookup divides its rows back (one multiply of (1, T, d) per call).

Every ``s_j`` is rounded to a power of two, so ``x / s`` and ``W * s`` are exact in floating
point: the smoothed model computes bit-identical fp32 logits, and ``smoothed`` restores every
weight bit for bit when it exits (no copy of the model is needed, and the caller's eager model is
untouched afterwards). torchao's prototype SmoothQuant multiplies each linear's input by 1/s at run
time instead (one more op per linear) and pairs only with its int8 x int8 config, which ExecuTorch
cannot lower (``aten._int_mm``); hence this fold. ExecuTorch's 8da4w is not smoothed: int4 groups
absorbed the moved range badly (XL's KL 0.373 -> 0.400).

Measured on SmolLM2 as a MatFormer (``runs/smollm2-mat-c``; bench/smoothing.py, torchao int8 in
eager PyTorch, KL to fp32 over 512 held-out tokens): S 0.0272 -> 0.0133, XL 0.0166 -> 0.0091.
Through LiteRT's own int8 (XL, context 256, the exporter's parity check): KL 0.0308 -> 0.0183.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from exporters.base import ExportError, separate_head

ALPHA = 0.5  # SmoothQuant's default migration strength; 0.4-0.5 were best on SmolLM2, 0.3/0.6 worse
CALIBRATION_TOKENS = 512
MAX_EXPONENT = 16  # scales stay within 2^-16 .. 2^16: far from fp32 overflow and subnormals


def applies(backend: str, precision: str, model=None) -> dict | None:
    """What an export of ``backend`` at ``precision`` smooths (``describe``), None if nothing.
    The head: ``"separate"`` where the artifact stores it apart from the lookup anyway (an untied
    model; a .pte keeps two copies of a tied table), else ``"tied"`` (one table, see ``smoothed``)."""
    from exporters.backends import get_backend

    b = get_backend(backend)
    if precision not in b.smoothed:
        return None
    separate = b.table_copies > 1 or (model is not None and model.lm_head is not None)
    return describe(head="separate" if separate else "tied")


def default_calibration(tokenizer=None) -> torch.Tensor:
    """Calibration tokens when the caller has none: the start of the default corpus's training
    split in ``tokenizer``'s ids (held out from every parity and evaluation text)."""
    from edge.data import load_corpus

    return load_corpus(tokenizer=tokenizer).train[:CALIBRATION_TOKENS]


@contextmanager
def for_export(model, backend: str, precision: str, calibration: torch.Tensor | None = None, tokenizer=None,
               enabled: bool = True):
    """``smoothed`` when ``backend``/``precision`` quantizes activations at run time (and
    ``enabled``), else a no-op; yields the summary for the artifact's metadata (None when nothing
    was smoothed)."""
    plan = applies(backend, precision, model) if enabled else None
    if plan is None:
        yield None
        return
    tokens = calibration if calibration is not None else default_calibration(tokenizer)
    with smoothed(model, tokens[:CALIBRATION_TOKENS], head=plan["head"]) as summary:
        yield summary


def describe(head: str | None) -> dict:
    """What an artifact's metadata (and its cache key) records about the smoothing."""
    return {"method": "SmoothQuant, power-of-two scales folded into norms, w_up rows and the head's table",
            "alpha": ALPHA, "calibration_tokens": CALIBRATION_TOKENS, "head": head}


def _pow2_scales(act_max: torch.Tensor, weights: list[torch.Tensor], alpha: float) -> torch.Tensor:
    """Per input channel: s = act^a / w^(1-a), rounded to a power of two; 1 where either is 0."""
    w_max = torch.stack([w.detach().abs().amax(0) for w in weights]).amax(0).float()  # (in,)
    a = act_max.float()
    ok = (a > 0) & (w_max > 0)
    s = torch.where(ok, a.clamp(min=1e-30) ** alpha / w_max.clamp(min=1e-30) ** (1 - alpha), torch.ones_like(a))
    return torch.exp2(torch.round(torch.log2(s)).clamp(-MAX_EXPONENT, MAX_EXPONENT))


@torch.no_grad()
def _input_maxima(model: nn.Module, tokens: torch.Tensor, head: str | None) -> dict[str, torch.Tensor]:
    """max |input| per channel of the linears each fold reads (``_pairs``' statistic names) and of
    the head (the final norm's output, tied or not), over one forward of ``tokens`` (N,) cut
    into rows of at most the model's context."""
    maxima: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(mod, args, out=None):
            x = (args[0] if out is None else out).detach()
            maxima[name] = x.abs().reshape(-1, x.shape[-1]).amax(0)  # (in,): one forward, one call
        return hook

    modules = dict(model.named_modules())
    hooks = [modules[stat].register_forward_pre_hook(keep(stat)) for stat, *_ in _pairs(model, None)]
    if head:
        hooks.append(model.norm.register_forward_hook(keep("head")))
    try:
        tokens = tokens.reshape(-1).long()
        L = min(len(tokens), model.config.max_context)
        model(tokens[:len(tokens) // L * L].view(-1, L))  # (B, L)
    finally:
        for h in hooks:
            h.remove()
    return maxima


def _pairs(model, head: str | None):
    """(statistic's linear, tensor divided by s [and how], weights multiplied by s) per fold."""
    for i, block in enumerate(model.layers):
        attn, ffn = block.attn, block.ffn
        yield f"layers.{i}.attn.wq", (block.attn_norm.weight, "vec"), [attn.wq.weight, attn.wk.weight, attn.wv.weight]
        yield f"layers.{i}.ffn.w_gate", (block.ffn_norm.weight, "vec"), [ffn.w_gate.weight, ffn.w_up.weight]
        yield f"layers.{i}.ffn.w_down", (ffn.w_up.weight, "rows"), [ffn.w_down.weight]
    if head:
        table = model.lm_head.weight if model.lm_head is not None else model.tok_emb.weight  # (V, d)
        yield "head", (model.norm.weight, "vec"), [table]


class _ScaledLookup(nn.Module):
    """A tied table whose columns were multiplied by s (for the head): the lookup divides its rows
    by s again, exactly (powers of two). One elementwise multiply of (B, T, d) per call."""

    def __init__(self, emb: nn.Embedding, s: torch.Tensor):
        super().__init__()
        self.emb = emb
        self.register_buffer("inv", 1.0 / s)  # (d,)

    @property
    def weight(self) -> torch.Tensor:
        return self.emb.weight  # the head reads the scaled table: F.linear(x, tok_emb.weight)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.emb(tokens) * self.inv  # (B, T, d)


@contextmanager
def smoothed(model, tokens: torch.Tensor, head: str | None, alpha: float = ALPHA):
    """Inside, ``model`` (a MatFormerLM: dense, or universal, whose XL run gives the statistics)
    has its linear inputs smoothed for dynamic int8 quantization; yields a summary for metadata.

    ``tokens``: calibration text (1-D, at least a few hundred tokens; not the parity text).
    ``head``: how the LM head is smoothed. ``"separate"``: a tied model gets a head of its own (a
    copy of the table) inside, for artifacts that store the head apart from the lookup anyway;
    ``"tied"``: the one table's columns are scaled for the head and the lookup divides its rows
    back (``_ScaledLookup``, one multiply per call); None: the head is left alone. On exit every
    weight is restored exactly, and a head or lookup made here is removed."""
    if tokens.numel() < 2:
        raise ExportError(f"activation smoothing needs calibration text: got {tokens.numel()} tokens "
                          f"(give the checkpoint's training text, {CALIBRATION_TOKENS} tokens or more)")
    if head not in (None, "separate", "tied"):
        raise ValueError(f"head={head!r} (allowed: None, 'separate', 'tied')")
    made_head = head == "separate" and model.lm_head is None
    lookup = model.tok_emb
    done: list[tuple[torch.Tensor, torch.Tensor, bool]] = []  # (tensor, factor, multiplied?) applied so far
    try:
        with torch.no_grad():
            if made_head:
                separate_head(model)
            maxima = _input_maxima(model, tokens, head)
            scales = []
            for stat, (target, how), weights in _pairs(model, head):
                s = _pow2_scales(maxima[stat], weights, alpha)  # (in,)
                inv = s if how == "vec" else s[:, None]  # a norm weight (in,) or w_up's rows (in, d)
                target.div_(inv)
                done.append((target, inv, False))
                for w in weights:  # weight (out, in): column j times s_j
                    w.mul_(s)
                    done.append((w, s, True))
                scales.append(s)
                if stat == "head" and model.lm_head is None:  # tied: the lookup undoes the columns' s
                    model.tok_emb = _ScaledLookup(lookup, s)
        folded = torch.cat(scales)  # every model has layers: never empty
        yield {**describe(head), "folds": len(scales),
               "largest_scale": float(folded.max()), "smallest_scale": float(folded.min())}
    finally:
        with torch.no_grad():
            for tensor, factor, multiplied in reversed(done):  # powers of two: exact inverses
                tensor.div_(factor) if multiplied else tensor.mul_(factor)
        if made_head:
            model.lm_head = None
        model.tok_emb = lookup
