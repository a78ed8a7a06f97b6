"""Generate text from an elastic artifact, choosing the member token by token.

``matedge run elastic.pte|elastic.tflite`` with ``--member``, ``--switch-every`` or ``--target-ms``
drives the project's elastic runner (exporters/elastic_runner.py on ``executorch.runtime``,
exporters/elastic_litert.py on ``ai_edge_litert``) with the ``tokenizer.json`` beside the file:

* ``member``: one member throughout;
* ``every``: cycle through ``members`` changing every N tokens (the new member reads the K/V the
  previous one wrote: no re-prefill);
* ``target``: edge.device.controller's latency controller moves along the members (cheapest
  first, as the build's ``elastic.json`` lists them) to hold a decode time.

Greedy decoding; text streams as tokens arrive, and the result says which member made each token.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edge.device.stock_run import RunError, RunResult, _Clock, tokenizer_beside
from exporters.logs import runtime_logs_hidden

SUFFIXES = {".pte": "executorch", ".tflite": "litert"}


@dataclass
class Policy:
    """How the member is chosen: exactly one of ``member``, ``every`` (+ ``members``), ``target_ms``."""
    member: str | None = None
    every: int | None = None
    members: list[str] = field(default_factory=list)
    target_ms: float | None = None

    def describe(self) -> str:
        if self.member:
            return f"member {self.member}"
        if self.every:
            return f"switching every {self.every} tokens through {', '.join(self.members)}"
        return f"latency controller, target {self.target_ms:g} ms/token"


@dataclass
class ElasticResult(RunResult):
    """A RunResult plus the member that made each token."""
    members_used: list[str] = field(default_factory=list)

    def mix(self) -> str:
        """``S:12 XL:52``: tokens per member, in order of first use."""
        return " ".join(f"{m}:{c}" for m, c in Counter(self.members_used).items())


def member_order(path: Path, runner) -> list[str]:
    """Members cheapest first: from the ``elastic.json`` the build writes beside the artifact, when
    it describes this file; else the runner's own order."""
    meta = path.with_name(path.stem + ".json")
    if meta.is_file():
        try:
            listed = list(json.loads(meta.read_text()).get("members", {}))
        except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
            raise RunError(f"{meta} is not the metadata JSON `matedge build --elastic` writes") from None
        if listed and set(listed) == set(runner.members):
            return listed
    return list(runner.members)


def check_elastic_path(path: Path) -> Path:
    """``path`` if it can be an elastic artifact (an existing .pte or .tflite), else RunError."""
    path = Path(path)
    if path.suffix not in SUFFIXES or not path.is_file():
        raise RunError(f"{str(path)!r}: --member/--switch-every/--target-ms run an elastic artifact "
                       f"(elastic.pte or elastic.tflite, as `matedge build --elastic` writes them)")
    return path


def open_elastic(path: Path, threads: int, show_logs: bool = False):
    """The elastic runner of ``path`` (.pte or .tflite); RunError when it is not an elastic file."""
    from exporters.backends import get_backend
    from exporters.base import ExportError

    path = check_elastic_path(path)
    try:
        with runtime_logs_hidden(show_logs):
            # inside: importing the LiteRT exporter loads litert_converter, whose native code logs
            # to stderr on import (absl, oneDNN notices)
            module = get_backend(SUFFIXES[path.suffix]).elastic_exporter()
            if path.suffix == ".tflite":
                runner = module.ElasticLiteRTRunner(path, threads=threads)
            else:
                from executorch.extension.pybindings import portable_lib

                portable_lib._unsafe_reset_threadpool(max(1, threads))
                runner = module.load_runner(path)
    except ExportError as e:
        raise RunError(str(e)) from None
    except (RuntimeError, ValueError) as e:
        raise RunError(f"cannot load {path.name} as an elastic artifact: {e}") from None
    if not runner.members:
        raise RunError(f"{path.name} holds one model, not several members: run it without "
                       "--member/--switch-every/--target-ms")
    return runner


def chooser(policy: Policy, members: list[str]) -> Callable[[int, float | None], str]:
    """(step, last decode ms) -> the member for this step; RunError for unknown member names."""
    named = [policy.member] if policy.member else policy.members
    unknown = [m for m in named if m not in members]
    if unknown:
        raise RunError(f"no member {', '.join(map(repr, unknown))} in this artifact (has: {', '.join(members)})")
    if policy.member:
        return lambda step, ms: policy.member
    if policy.every:
        return lambda step, ms: policy.members[(step // policy.every) % len(policy.members)]
    from edge.device.controller import LatencyController

    ctl = LatencyController(members, policy.target_ms)
    return lambda step, ms: ctl.member if ms is None else ctl.observe(ms)


def generate_elastic(path: Path, prompt: str, max_new_tokens: int, policy: Policy, threads: int = 1,
                     on_piece: Callable[[str], None] | None = None, show_logs: bool = False) -> ElasticResult:
    """Greedy generation after ``prompt`` with the member chosen per token by ``policy``."""
    from edge.tokenizer import load_tokenizer

    path = check_elastic_path(path)
    tok = load_tokenizer(tokenizer_beside(path).parent)
    runner = open_elastic(path, threads, show_logs)
    order = member_order(path, runner)
    if policy.every and not policy.members:  # --switch-every alone: all members, cheapest first
        policy.members = order
    pick = chooser(policy, order)
    ids = tok.encode(prompt)
    if not ids or len(ids) >= runner.context:
        raise RunError(f"the prompt is {len(ids)} tokens; this artifact holds {runner.context} positions")
    result = ElasticResult(f"{runner.label} ({policy.describe()})")
    clock = _Clock(result, on_piece)
    new, shown, member, ms = [], "", pick(0, None), None
    with runtime_logs_hidden(show_logs):
        logits, pos = runner.run(ids, 0, member), len(ids)
        for step in range(max_new_tokens):
            token = int(logits[-1].argmax())
            if token in tok.eos_ids:
                break
            new.append(token)
            result.members_used.append(member)
            text = tok.decode(new)
            if not text.endswith("\ufffd"):  # a byte-level token may end inside a UTF-8 character
                clock(text[len(shown):])
                shown = text
            if pos >= runner.context or step + 1 == max_new_tokens:
                break
            member = pick(step + 1, ms)
            t = time.perf_counter()
            logits = runner.run([token], pos, member)
            ms, pos = (time.perf_counter() - t) * 1e3, pos + 1
    return clock.finish()
