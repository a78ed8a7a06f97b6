"""Generate text from an artifact through the stock on-device runtime that matches it.

* ``.pte``      -> ExecuTorch's LLM runner, ``executorch.extension.llm.runner.TextLLMRunner``
  (the runner behind ``llama_main``, Android's ``LlmModule`` and the iOS demo), with the
  ``tokenizer.json`` beside the file.
* ``.litertlm`` -> LiteRT-LM's ``Engine`` (package ``litert-lm-api``; the engine of Google's AI
  Edge Gallery), which carries its own tokenizer.
* ``.tflite``   -> refused: a bare LiteRT model has no tokenizer and no generation loop.

Greedy decoding; tokens stream to a callback as the runtime emits them, and the timings are
taken on this side of that callback (time to first token from the call; ms/token over the
tokens after the first).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edge.errors import MatEdgeError
from exporters.logs import runtime_logs_hidden

SUFFIXES = (".pte", ".litertlm")


class RunError(MatEdgeError):
    """The artifact cannot be run here (wrong kind of file, missing tokenizer or runtime)."""


@dataclass
class RunResult:
    """What one generation produced and how long it took."""
    runtime: str
    text: str = ""
    pieces: list[str] = field(default_factory=list)  # as streamed, one per callback
    ttft_ms: float = float("nan")  # call -> first piece (prompt prefill + first decode step)
    ms_per_token: float = float("nan")  # between pieces, after the first

    @property
    def tokens(self) -> int:
        return len(self.pieces)


class _Clock:
    """Collects streamed pieces with their arrival times and forwards them."""

    def __init__(self, result: RunResult, on_piece: Callable[[str], None] | None):
        self.result, self.on_piece = result, on_piece
        self.start = time.perf_counter()
        self.times: list[float] = []

    def __call__(self, piece: str) -> None:
        self.times.append(time.perf_counter())
        self.result.pieces.append(piece)
        if self.on_piece:
            self.on_piece(piece)

    def finish(self) -> RunResult:
        r, t = self.result, self.times
        r.text = "".join(r.pieces)
        if t:
            r.ttft_ms = (t[0] - self.start) * 1e3
        if len(t) > 1:
            r.ms_per_token = (t[-1] - t[0]) * 1e3 / (len(t) - 1)
        return r


def check_artifact(path: Path) -> Path:
    """The artifact path, or RunError naming what would be accepted."""
    path = Path(path)
    if path.suffix == ".tflite":
        hint = path.with_suffix(".litertlm")
        raise RunError(f"{path.name} is a bare LiteRT model (no tokenizer, no generation loop): run the "
                       f".litertlm bundle beside it{f' ({hint.name})' if hint.exists() else ''} instead")
    if path.suffix not in SUFFIXES:
        raise RunError(f"{str(path)!r}: cannot run a {path.suffix or 'suffix-less'} file "
                       f"(allowed: {', '.join(SUFFIXES)}, as `matedge export` / `matedge build` write them)")
    if not path.is_file():
        raise RunError(f"{str(path)!r} does not exist (or is not a file)")
    return path


def generate(path: Path, prompt: str, max_new_tokens: int = 64, threads: int = 1,
             on_piece: Callable[[str], None] | None = None, show_logs: bool = False) -> RunResult:
    """Greedy generation of up to ``max_new_tokens`` tokens after ``prompt``. The runtime's own
    log lines are hidden unless ``show_logs`` (kept in a log named in the error if it fails)."""
    path = check_artifact(path)
    run = run_pte if path.suffix == ".pte" else run_litertlm
    return run(path, prompt, max_new_tokens, threads, on_piece, show_logs)


def run_pte(path: Path, prompt: str, max_new_tokens: int, threads: int,
            on_piece: Callable[[str], None] | None = None, show_logs: bool = False) -> RunResult:
    """ExecuTorch's ``TextLLMRunner`` on ``path`` + the ``tokenizer.json`` beside it."""
    return PteChat(path, threads, show_logs).generate(prompt, max_new_tokens, on_piece)


class PteChat:
    """A ``TextLLMRunner`` kept open across turns: each ``generate`` continues the KV cache."""

    def __init__(self, path: Path, threads: int = 1, show_logs: bool = False):
        from edge.tokenizer import load_tokenizer

        self.path = Path(path)
        self.show_logs = show_logs
        with runtime_logs_hidden(show_logs):
            self.runner = open_pte(self.path, threads)
        tok = load_tokenizer(self.path.parent)
        self.add_bos = tok.add_bos
        # The runner hands over the stop token's text too ("<|im_end|>"): it ends the answer and is
        # not part of it (the elastic runner stops before it as well)
        self.stop_texts = {tok.hf.decode([i], skip_special_tokens=False) for i in tok.eos_ids}
        self.turns = 0

    def generate(self, prompt: str, max_new_tokens: int, on_piece: Callable[[str], None] | None = None) -> RunResult:
        """Greedy tokens after ``prompt`` (appended to the previous turns, if any)."""
        from executorch.extension.llm.runner import GenerationConfig

        clock = _Clock(RunResult("executorch TextLLMRunner (XNNPACK)"), on_piece)
        # BOS on the first turn only, as the tokenizer's config says (the runner's C++ tokenizer
        # does not apply tokenizer.json's post-processor). warming=True only stops the runner
        # from printing each piece and its report to stdout itself: the pieces reach our
        # callback, which streams and times them.
        bos = int(self.turns == 0 and self.add_bos)
        config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.0, echo=False, num_bos=bos,
                                  warming=True)
        try:
            with runtime_logs_hidden(self.show_logs):
                self.runner.generate(prompt, config,
                                     token_callback=lambda piece: piece in self.stop_texts or clock(piece))
        except RuntimeError as e:
            raise RunError(f"ExecuTorch's LLM runner failed on {self.path.name}: {e}") from None
        self.turns += 1
        return clock.finish()


def tokenizer_beside(path: Path) -> Path:
    """The ``tokenizer.json`` in an artifact's folder; RunError when it is missing."""
    tokenizer = Path(path).parent / "tokenizer.json"
    if not tokenizer.is_file():
        raise RunError(f"{tokenizer} not found: {Path(path).name} runs with the tokenizer.json (+ "
                       "tokenizer_config.json) that `matedge export` and `matedge build` write beside it")
    return tokenizer


def open_pte(path: Path, threads: int):
    """A TextLLMRunner on ``path`` with ``tokenizer.json`` from its folder, on ``threads`` threads."""
    tokenizer = tokenizer_beside(path)
    try:
        from executorch.extension.llm.runner import TextLLMRunner
        from executorch.extension.pybindings import portable_lib
    except (ImportError, RuntimeError):
        raise RunError("running a .pte needs the executorch wheel: pip install 'matformer-edge[executorch]'") from None
    from exporters.executorch import load_kernels
    from exporters.llm_forward import load_llama_ops

    load_llama_ops()  # a program exported with ExecuTorch's LLM custom ops needs their kernels
    load_kernels()  # and an int8 one its quantized embedding kernel
    portable_lib._unsafe_reset_threadpool(max(1, threads))
    try:
        return TextLLMRunner(str(path), str(tokenizer))
    except RuntimeError as e:
        raise RunError(f"ExecuTorch's LLM runner cannot load {Path(path).name}: {e}") from None


def run_litertlm(path: Path, prompt: str, max_new_tokens: int, threads: int,
                 on_piece: Callable[[str], None] | None = None, show_logs: bool = False) -> RunResult:
    """LiteRT-LM's ``Engine`` on a ``.litertlm`` bundle (CPU backend, greedy)."""
    from exporters.base import ExportError
    from exporters.litert_engine import open_engine, session

    clock = _Clock(RunResult("LiteRT-LM Engine (CPU)"), on_piece)
    try:  # the engine's settings (own XNNPACK cache folder, fp32 activations) live in one place
        with runtime_logs_hidden(show_logs), open_engine(path, threads=max(1, threads)) as engine:
            clock.start = time.perf_counter()
            sess = session(engine, max_new_tokens)
            sess.run_prefill([prompt])
            for chunk in sess.run_decode_async():
                for text in chunk.texts[:1]:
                    if text:
                        clock(text)
    except ExportError as e:  # LiteRT-LM missing: the install hint
        raise RunError(str(e)) from None
    except RuntimeError as e:
        raise RunError(f"LiteRT-LM cannot run {Path(path).name}: {e}") from None
    return clock.finish()
