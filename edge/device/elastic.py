"""Decoding with an elastic artifact: switch member between tokens, speculative decoding, and the
quality cost of switching.

Everything here drives a runner with ``run(tokens, pos, member) -> logits (T, V)`` over one
KV cache shared by every member (exporters/elastic_runner.py on ExecuTorch): the members differ
only in their FFN widths, so a member reads the K/V that the previous members wrote.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from edge.generate import GenerationStats

Schedule = Callable[[int], str]  # decode step -> member name


def every(n: int, members: Sequence[str]) -> Schedule:
    """Cycle through ``members`` changing every ``n`` tokens (step 0 is the prompt)."""
    return lambda step: members[(step // n) % len(members)]


def greedy(runner, prompt: Sequence[int], n_new: int, schedule: Schedule | str) -> list[int]:
    """Greedy tokens after ``prompt``; step i (0 = the prompt's prefill) runs member schedule(i)."""
    member = (lambda _: schedule) if isinstance(schedule, str) else schedule
    logits = runner.run(list(prompt), 0, member(0))
    out = [int(logits[-1].argmax())]
    pos = len(prompt)
    for step in range(1, n_new):
        logits = runner.run([out[-1]], pos, member(step))
        out.append(int(logits[-1].argmax()))
        pos += 1
    return out


@dataclass
class SpeculativeStats(GenerationStats):
    """A speculative run on the runtime (``rounds`` = verify calls), plus the drafts each call kept."""
    accepted_per_call: list[int] = field(default_factory=list)


def speculative(runner, prompt: Sequence[int], n_new: int, draft: str, verify: str, k: int) -> SpeculativeStats:
    """Greedy decoding of ``verify`` with ``draft`` proposing ``k`` tokens per round; output equals
    ``greedy(runner, prompt, n_new, verify)``.

    One cache: the draft writes slots pos..pos+k-1 while proposing; the verifier's one call on
    [x, d_1..d_k] at ``pos`` (T = k + 1) rewrites slots pos..pos+k with its own K/V and yields its
    greedy choice after each prefix. The longest agreeing prefix is kept plus the verifier's next
    token; slots past it hold stale K/V that are overwritten before any query can attend to them
    (a query at p attends to slots <= p, and slot p is written in the same call)."""
    if k < 1:
        raise ValueError(f"k={k}: need at least one drafted token per round")
    t0 = time.perf_counter()
    logits = runner.run(list(prompt), 0, verify)
    out = [int(logits[-1].argmax())]
    pos, st = len(prompt), SpeculativeStats(tokens=out)  # out[-1] is known, not yet in the cache, at `pos`
    while len(out) < n_new:
        kk = min(k, n_new - len(out), runner.context - pos - 1)
        if kk < 1:
            break
        drafts, x = [], out[-1]
        for i in range(kk):  # draft member proposes kk tokens, one call each
            x = int(runner.run([x], pos + i, draft)[-1].argmax())
            drafts.append(x)
        ver = runner.run([out[-1], *drafts], pos, verify).argmax(-1)  # (kk + 1,) verifier choices
        n_ok = 0
        while n_ok < kk and drafts[n_ok] == int(ver[n_ok]):
            n_ok += 1
        out.extend(drafts[:n_ok] + [int(ver[n_ok])])
        pos += n_ok + 1
        st.drafted, st.accepted, st.rounds = st.drafted + kk, st.accepted + n_ok, st.rounds + 1
        st.accepted_per_call.append(n_ok)
    st.tokens = out[:n_new]
    st.seconds = time.perf_counter() - t0
    return st


def _nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-row negative log-likelihood of ``targets`` under ``logits`` (N, V)."""
    m = logits.max(-1, keepdims=True)
    lse = np.log(np.exp(logits - m).sum(-1)) + m[:, 0]
    return lse - logits[np.arange(len(targets)), targets]


def switching_quality(runner, windows: Sequence[Sequence[int]], members: Sequence[str], n: int) -> dict:
    """Teacher-forced quality of switching member every ``n`` tokens over held-out ``windows``.

    * shared: token by token, the member schedule ``every(n, members)``; after a switch the new
      member reads the K/V its predecessors wrote (what a runner that switches in place does);
    * reprefill: the same schedule, but each member always sees K/V of its own (what re-prefilling
      the whole context at every switch gives): each window's full forward per member.
    Returns the mean loss (nats/token) of both and their greedy agreement (same argmax)."""
    sched = every(n, members)
    shared_nll, ref_nll, agree, count = 0.0, 0.0, 0, 0
    for w in windows:
        w = np.asarray(w, dtype=np.int64)
        L = len(w) - 1  # predict w[1:] from w[:-1]
        full = {m: runner.run(w[:L], 0, m) for m in members}  # (L, V) each, own K/V only
        step_logits = np.stack([runner.run(w[t:t + 1], t, sched(t))[-1] for t in range(L)])
        ref = np.stack([full[sched(t)][t] for t in range(L)])
        shared_nll += float(_nll(step_logits, w[1:]).sum())
        ref_nll += float(_nll(ref, w[1:]).sum())
        agree += int((step_logits.argmax(-1) == ref.argmax(-1)).sum())
        count += L
    return {"n": n, "members": list(members), "tokens": count, "loss_shared": shared_nll / count,
            "loss_reprefill": ref_nll / count, "agreement": agree / count}
