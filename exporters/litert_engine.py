"""Run a ``.litertlm`` through LiteRT-LM's own ``Engine`` (``litert-lm-api``): the stock runtime.

This is the engine behind Google's AI Edge Gallery and the LiteRT-LM apps; it reads the bundle's
tokenizer, start/stop tokens and signatures itself. Used for stock-runtime parity (tests) and for
generating text on this machine.

    with open_engine(path, threads=1) as engine:
        text = generate(engine, "Hello", max_new_tokens=32)

Greedy decoding is ``top_k=1``. The engine gets its own ``cache_dir``: without one it writes an
``*.xnnpack_cache`` file beside the model. Activations are fp32 (LiteRT-LM's CPU default for a
text decoder is fp16 where the CPU has it, which is not what the parity check verified).
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from exporters.base import ExportError, require

EXTRA = "litert"
# Sessions made by session(), per engine: closed before their engine (a session deleted after
# its engine crashes the process).
_SESSIONS: dict[int, list] = {}  # id(engine) -> sessions (Engine is not hashable)


@contextlib.contextmanager
def open_engine(path: Path, threads: int = 1, cache_dir: Path | None = None):
    """A LiteRT-LM ``Engine`` on the CPU for ``path`` (.litertlm); closed on exit."""
    litert_lm = require("litert_lm", EXTRA, "running a .litertlm (LiteRT-LM)")
    from litert_lm._ffi import ActivationDataType

    path = Path(path)
    if not path.is_file() or path.suffix != ".litertlm":
        raise ExportError(f"{str(path)!r} is not a .litertlm file (export with --backend litert)")
    with contextlib.ExitStack() as stack:
        if cache_dir is None:
            cache_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="litertlm-cache-"))
        engine = litert_lm.Engine(str(path), backend=litert_lm.Backend.CPU(thread_count=threads),
                                  cache_dir=str(cache_dir), activation_data_type=ActivationDataType.FLOAT32)
        stack.callback(engine.close)
        stack.callback(lambda: [sess.close() for sess in _SESSIONS.pop(id(engine), [])])
        yield engine


def session(engine, max_new_tokens: int):
    """A greedy session (top_k=1) that stops after ``max_new_tokens`` or at a stop token."""
    import litert_lm

    sess = engine.create_session(sampler_config=litert_lm.SamplerConfig(top_k=1), max_output_tokens=max_new_tokens)
    _SESSIONS.setdefault(id(engine), []).append(sess)
    return sess


def generate(engine, prompt: str, max_new_tokens: int, on_text=None, sess=None) -> str:
    """Greedy continuation of ``prompt``; ``on_text(piece)`` streams pieces as they come.

    Pass ``sess`` to continue a conversation: its KV cache holds the earlier turns.
    """
    own = sess is None
    sess = sess or session(engine, max_new_tokens)
    try:
        sess.run_prefill([prompt])
        pieces = []
        for resp in sess.run_decode_async():
            for piece in resp.texts:
                pieces.append(piece)
                if on_text:
                    on_text(piece)
    finally:
        if own:
            sess.close()
    return "".join(pieces)
