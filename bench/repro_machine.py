"""How the paper reproduction uses the machine: a pool of single-threaded worker processes, and
measurements of the machine and its load (CPU model, load averages) for the report.

Workers are started with ``spawn`` (a forked child of a process that already ran torch can hang
in its OpenMP pool) and each sets its own torch thread count, so ``jobs`` workers x ``threads``
threads is exactly what the run asks of the CPU.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import statistics
import threading
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_pool(fn, tasks: list[tuple], jobs: int, threads: int, log=print, label=lambda t: str(t[0])) -> list:
    """``[fn(*t) for t in tasks]``, run by ``jobs`` worker processes of ``threads`` torch threads.

    Tasks are submitted in the order given (pass them longest first: a greedy longest-first
    schedule); results come back in that order. ``jobs <= 1`` runs them here, one after another.
    """
    if jobs <= 1:
        _init_worker(threads)
        out = []
        for t in tasks:
            out.append(fn(*t))
            log(f"  done {label(t)}")
        return out
    results: list = [None] * len(tasks)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                             initargs=(threads,)) as pool:
        futures = {pool.submit(fn, *t): i for i, t in enumerate(tasks)}
        for fut in as_completed(futures):
            i = futures[fut]
            results[i] = fut.result()  # a worker's exception is raised here, with its traceback
            log(f"  done {label(tasks[i])} ({sum(r is not None for r in results)}/{len(tasks)})")
    return results


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (platform.processor() is empty on Linux)."""
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """The 1/5/15-minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


class LoadMonitor:
    """Samples the 1-minute load average every ``every`` seconds in a background thread."""

    def __init__(self, every: float = 30.0):
        self.every, self.samples = every, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            la = load_average()
            if la:
                self.samples.append(la[0])
            self._stop.wait(self.every)

    def __enter__(self) -> "LoadMonitor":
        self.before = load_average()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.after = load_average()

    def summary(self) -> dict:
        """Load before/after (1/5/15 min) and the 1-minute load sampled during the run."""
        s = self.samples
        return {"before": self.before, "after": self.after, "every_s": self.every, "n": len(s),
                "mean": round(statistics.fmean(s), 2) if s else None, "max": max(s, default=None)}
