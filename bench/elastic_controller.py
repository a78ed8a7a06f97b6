"""Section 4 of bench/elastic.py: the latency controller under a competing CPU-bound process.

Halfway through, a pure-Python spin process starts, pinned with the bench to one CPU, so the
decode loop gets half of it and every member takes about twice its idle time. The default target
is one the controller can hold under that load: the largest member fits it idle (>= 1.2x its idle
time) and the smallest fits it busy (>= 1.25 x 2x its idle time); ``--target-ms`` sets another.
The elastic run (edge.device.controller moves between members) and a fixed run of the largest
member report the share of tokens within the target before and after, and the loss of the
member schedule the controller chose (the quality given up).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

from edge.device.controller import LatencyController
from edge.device.elastic import _nll
from edge.texttable import format_table


def busy_processes() -> list[subprocess.Popen]:
    """A competing CPU-bound process (a pure-Python spin) on the CPU this bench runs on, both
    pinned there: the decode loop gets half of that CPU, as when another app takes a phone's core."""
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    os.sched_setaffinity(spin.pid, {cpu})
    return [spin]


def controlled_run(elastic, prompt, steps: int, target: float, members, idle: dict, fixed: str | None):
    """Generate ``steps`` tokens (restarting at the context's end); the load starts halfway.
    Returns (ms per token, member per token)."""
    ctl = LatencyController(members, target, cost=idle)
    ms, used, pos, tok, busy = [], [], len(prompt), None, []
    cpus = os.sched_getaffinity(0)
    try:
        for step in range(steps):
            if step == steps // 2:
                busy = busy_processes()
            if tok is None or pos >= elastic.context - 1:
                tok, pos = [int(elastic.run(prompt, 0, members[-1])[-1].argmax())], len(prompt)
            m = fixed or ctl.member
            t = time.perf_counter()
            logits = elastic.run(tok, pos, m)
            dt = (time.perf_counter() - t) * 1e3
            if fixed is None:
                ctl.observe(dt)
            ms.append(dt)
            used.append(m)
            tok, pos = [int(logits[-1].argmax())], pos + 1
    finally:
        for p in busy:
            p.kill()
            p.wait()
        os.sched_setaffinity(0, cpus)
    return ms, used


def reachable_target(idle: dict) -> float:
    """ms/token that the largest member meets idle (20% headroom) and the smallest meets with
    half the CPU (twice its idle time, 25% headroom): a target the controller can hold."""
    return max(1.2 * max(idle.values()), 1.25 * 2 * min(idle.values()))


def section_controller(elastic, prompt, windows, members, idle: dict, steps: int,
                       target: float | None = None) -> None:
    """Print the elastic and the fixed-largest runs' shares within ``target`` (default: reachable)."""
    order = sorted(members, key=lambda m: idle[m])
    top = order[-1]
    target = target or reachable_target(idle)
    print(f"\n## 4. Controller: target {target:.3f} ms/token ({target / idle[top]:.2f}x {top} idle); a CPU-bound process pinned to the bench's CPU starts at token {steps // 2}")
    rows = []
    for label, fixed in (("elastic", None), (f"fixed {top}", top)):
        ms, used = controlled_run(elastic, prompt, steps, target, order, idle, fixed)
        h = steps // 2
        tokens = [100 * np.mean(np.array(part) <= target) for part in (ms[:h], ms[h:])]
        # A preempted token overshoots whatever the member; what a reader sees is the pace over a
        # few tokens: the share of 16-token windows whose mean time is within the target.
        paced = [100 * np.mean(_window_means(part, 16) <= target) for part in (ms[:h], ms[h:])]
        mix = {m: used[h:].count(m) for m in order if used[h:].count(m)}
        rows.append([label, f"{tokens[0]:.0f}% / {paced[0]:.0f}%", f"{tokens[1]:.0f}% / {paced[1]:.0f}%",
                     round(float(np.median(ms[h:])), 3), " ".join(f"{m}:{c}" for m, c in mix.items()),
                     _schedule_loss(elastic, windows, used[h:])])
    print(format_table(["run", "within target idle (tokens / 16-token windows)", "busy (tokens / windows)",
                        "busy median ms", "members used (busy half)", "loss of that schedule"], rows))


def _window_means(ms: list[float], n: int) -> np.ndarray:
    """Mean of each run of ``n`` consecutive times (non-overlapping)."""
    k = len(ms) // n
    return np.asarray(ms[:k * n]).reshape(k, n).mean(axis=1)


def _schedule_loss(elastic, windows, used) -> float:
    """Teacher-forced loss over ``windows`` with members in the proportions of ``used``, switched
    in place over the shared cache in runs as the controller did (the quality given up)."""
    total, count, i = 0.0, 0, 0
    for w in windows:
        w = np.asarray(w, dtype=np.int64)
        logits = []
        for t in range(len(w) - 1):
            logits.append(elastic.run(w[t:t + 1], t, used[i % len(used)])[-1])
            i += 1
        total += float(_nll(np.stack(logits), w[1:]).sum())
        count += len(w) - 1
    return round(total / count, 4)
