"""Parity of an artifact with the eager model, on real validation text.

1. Prefill: the first T tokens of the validation stream through eager (``model(tokens)``) and
   through the artifact: max abs logit difference. A runner with ``forward(tokens, input_pos)``
   (ExecuTorch's LLM-runner convention; the LiteRT runner has one too) takes the prompt in two
   chunks, at 0 and at T/2, as a second turn would continue the cache; its logits are those of
   each chunk's last token. Other runners (Core ML) return every position through ``prefill``.
2. Decode: eager greedily extends the prompt by ``steps`` tokens (full forward each step, no
   cache: it checks the artifact's KV cache against the model itself). The artifact is fed the
   same tokens (teacher forcing, so both stay on one sequence) through ``decode``; per step we
   compare the argmax (greedy agreement), the max abs logit difference and KL(eager || artifact).

Thresholds: fp32 must match to 1e-4 times the largest eager logit magnitude (at least 1; prefill
and every decode step): kernels that add in another order differ by a few ulps of what they add,
so errors grow with the logits (SmolLM2's reach ~39 and its fp32 .pte differs by up to 9e-5); fp16 and
quantized artifacts must agree on >= 90% of greedy tokens, with KL reported. Failures are
returned (``passed: False`` plus the reasons), never hidden.
"""

from __future__ import annotations

import numpy as np
import torch

STEPS = 32
FP32_MAX_ABS = 1e-4
MIN_AGREEMENT = 0.90


def thresholds(precision: str, logit_scale: float = 1.0) -> dict:
    """The pass criteria for one precision; ``logit_scale``: the largest |eager logit| of the check."""
    if precision == "fp32":
        limit = FP32_MAX_ABS * max(1.0, float(logit_scale))
        return {"prefill_max_abs": limit, "decode_max_abs": limit}
    return {"greedy_agreement": MIN_AGREEMENT}


def prompt_tokens(length: int, stream: torch.Tensor | None = None) -> torch.Tensor:
    """(1, length) tokens from the start of the default corpus's validation text."""
    if stream is None:
        from edge.data import load_corpus

        stream = load_corpus().val
    return stream[:length].view(1, length).long()


@torch.no_grad()
def reference(model, prompt: torch.Tensor, steps: int = STEPS) -> dict:
    """Eager logits: prefill (T, V), and per greedy step the logits of the new token (steps, V)."""
    model = model.eval()
    prefill = model(prompt)[0]  # (T, V)
    seq = torch.cat([prompt, prefill[-1:].argmax(-1).view(1, 1)], dim=1)
    step_logits = []
    for _ in range(steps):
        last = model(seq)[0, -1]  # (V,) for the newest token at position seq_len - 1
        step_logits.append(last)
        seq = torch.cat([seq, last.argmax().view(1, 1)], dim=1)
    return {"prompt": prompt, "prefill": prefill.numpy(), "steps": torch.stack(step_logits).numpy(),
            "tokens": seq[0, prompt.shape[1]:].tolist()}  # tokens[i] is fed at position T + i


def _kl(p_logits: np.ndarray, q_logits: np.ndarray) -> np.ndarray:
    """KL(softmax(p) || softmax(q)) per row, in nats."""
    lp = p_logits - _logsumexp(p_logits)
    lq = q_logits - _logsumexp(q_logits)
    return (np.exp(lp) * (lp - lq)).sum(-1)


def _logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(-1, keepdims=True)
    return m + np.log(np.exp(x - m).sum(-1, keepdims=True))


def check(runner, ref: dict, precision: str) -> dict:
    """Run the artifact through ``runner`` and compare with ``ref``; returns the parity record."""
    prompt, T = ref["prompt"], ref["prompt"].shape[1]
    pre, rows = _prefill(runner, prompt.numpy())
    want_pre = ref["prefill"][rows]
    got = []
    for i, tok in enumerate(ref["tokens"][:-1]):  # feed token i at position T + i
        got.append(np.asarray(runner.decode(int(tok), T + i), dtype=np.float64).reshape(-1))
    got = np.stack(got)  # (steps, V)
    want = ref["steps"].astype(np.float64)
    scale = float(max(np.abs(want_pre).max(), np.abs(want).max()))
    kl = _kl(want, got)
    # inf/NaN logits (an fp16 overflow) can still give the right argmax; they never pass, and the
    # record stays valid JSON (no NaN in it)
    non_finite = int((~np.isfinite(pre)).sum() + (~np.isfinite(got)).sum())
    result = {
        "runtime": runner.label, "prompt_tokens": int(T), "decode_steps": len(got),
        "prefill_max_abs": float(np.abs(pre - want_pre).max()),
        "prefill_argmax_agreement": float((pre.argmax(-1) == want_pre.argmax(-1)).mean()),
        "decode_max_abs": float(np.abs(got - want).max()),
        "greedy_agreement": float((got.argmax(-1) == want.argmax(-1)).mean()),
        "kl_mean": _finite(kl.mean()), "kl_max": _finite(kl.max()), "non_finite_logits": non_finite,
        "logit_scale": scale, "thresholds": thresholds(precision, scale),
    }
    failures = [f"non_finite_logits {non_finite} > 0"] if non_finite else []
    for key, limit in result["thresholds"].items():
        value = result[key]
        ok = value >= limit if key == "greedy_agreement" else value <= limit
        if not ok:
            failures.append(f"{key} {value:.3g} {'<' if key == 'greedy_agreement' else '>'} {limit:g}")
    result["passed"] = not failures
    result["failures"] = failures
    return result


def _finite(x) -> float | None:
    return float(x) if np.isfinite(x) else None


def _prefill(runner, prompt: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """The artifact's prompt logits (rows, V) and which prompt positions those rows are."""
    T = prompt.shape[1]
    if hasattr(runner, "forward") and T >= 2:
        h = T // 2
        first = np.asarray(runner.forward(prompt[:, :h], 0), dtype=np.float64).reshape(-1)
        second = np.asarray(runner.forward(prompt[:, h:], h), dtype=np.float64).reshape(-1)
        return np.stack([first, second]), [h - 1, T - 1]
    out = np.asarray(runner.prefill(prompt), dtype=np.float64)
    out = out.reshape(-1, out.shape[-1])  # (T, V), or (1, V) from a runner that returns the last position
    return out, list(range(T - len(out), T))


def summary(p: dict) -> str:
    """One line: PASS/FAIL and the figures."""
    head = "PASS" if p.get("passed") else "FAIL"
    line = (f"{head} [{p['runtime']}] prefill max|d| {p['prefill_max_abs']:.2e}, "
            f"{p['decode_steps']} decode steps: greedy agreement {100 * p['greedy_agreement']:.1f}%, "
            f"max|d| {p['decode_max_abs']:.2e}, KL mean "
            + (f"{p['kl_mean']:.2e}" if p.get("kl_mean") is not None else "not finite"))
    return line + (f"  ({'; '.join(p['failures'])})" if p.get("failures") else "")
