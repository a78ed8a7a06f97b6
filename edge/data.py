"""Text data: a byte-level tokenizer, the default corpus, user corpora, and batches.

Tokenizer: token ids 0..255 are the UTF-8 bytes; 256.. are specials (see SPECIALS). A C++ or
JavaScript app re-implements it in a few lines: ``ids = [BOS] + list(text.encode("utf-8"))``.

Default corpus: text every Python installation has — ``pydoc_data.topics`` (the language
reference) and the standard library's own sources — split into train/val by a hash of each
document's name, so the split is the same on every run and machine with the same Python.
"""

from __future__ import annotations

from edge.errors import MatEdgeError

import functools
import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

PAD, BOS, EOS, SEP = 256, 257, 258, 259
SPECIALS = {"<pad>": PAD, "<bos>": BOS, "<eos>": EOS, "<sep>": SEP}
VOCAB_SIZE = 260
TOKENIZER = {"type": "bytes", "vocab_size": VOCAB_SIZE, "specials": SPECIALS,
             "encode": "UTF-8 bytes are token ids 0..255; prepend <bos>"}

DEFAULT_MAX_BYTES = 12_000_000  # enough for the `small` preset's training budget
# With a real (BPE) tokenizer: ~0.8M tokens, tokenized in ~15 s on one core; enough for
# calibration and a distillation fine-tune, and ~40k held-out tokens.
TOKENIZED_MAX_BYTES = 3_000_000
VAL_FRACTION = 0.05
TEXT_SUFFIXES = {".txt", ".md", ".rst", ".py", ".json", ".toml", ".yaml", ".yml", ".csv", ".html",
                 ".c", ".h", ".cpp", ".js", ".ts", ".tex", ""}


class DataError(MatEdgeError):
    """A data path is missing, unreadable or holds no text."""


def encode(text: str, bos: bool = True) -> list[int]:
    return ([BOS] if bos else []) + list(text.encode("utf-8"))


def decode(ids) -> str:
    return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")


@dataclass
class Corpus:
    """Token streams for training and validation (1-D int64 tensors) and where they came from."""
    train: torch.Tensor
    val: torch.Tensor
    source: str
    n_documents: int
    sha256: str

    def describe(self) -> str:
        return (f"{self.source}: {self.n_documents} documents, {len(self.train):,} train / "
                f"{len(self.val):,} val tokens (sha256 {self.sha256[:12]})")


def _default_documents(max_bytes: int) -> list[tuple[str, str]]:
    """(name, text) pairs from pydoc topics and stdlib sources, a deterministic subset."""
    from pydoc_data.topics import topics

    docs = [(f"pydoc:{k}", v) for k, v in topics.items()]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in stdlib.rglob("*.py"):
        rel = path.relative_to(stdlib).as_posix()
        if rel.startswith(("site-packages/", "test/", "idlelib/idle_test/")) or "/tests/" in rel:
            continue
        try:
            docs.append((f"stdlib:{rel}", path.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, OSError):
            continue
    # Order by a hash of the name so any byte cap keeps a spread of modules, not just "a*".
    docs.sort(key=lambda d: _hash(d[0]))
    kept, total = [], 0
    for name, text in docs:
        if total >= max_bytes:
            break
        kept.append((name, text))
        total += len(text)
    return kept


def _user_documents(path: Path) -> list[tuple[str, str]]:
    path = Path(path)
    if not path.exists():
        raise DataError(f"data path {str(path)!r} does not exist (give a text file or a folder of them)")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                  and p.suffix.lower() in TEXT_SUFFIXES)
    docs = []
    for f in files:
        try:
            # named relative to the folder: the held-out documents stay the same when it moves
            name = f.name if path.is_file() else f.relative_to(path).as_posix()
            docs.append((name, f.read_text(encoding="utf-8")))
        except UnicodeDecodeError:
            if path.is_file():
                raise DataError(f"data file {str(f)!r} is not UTF-8 text") from None
        except OSError as e:
            raise DataError(f"data path {str(f)!r} cannot be read ({e.strerror})") from None
    text_bytes = sum(len(t) for _, t in docs)
    if text_bytes < 2048:
        raise DataError(f"data path {str(path)!r} holds {text_bytes} bytes of UTF-8 text; "
                        f"need at least 2048 (files ending in {', '.join(sorted(s for s in TEXT_SUFFIXES if s))})")
    return docs


def _hash(name: str) -> int:
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big")


def _stream(docs: list[tuple[str, str]]) -> torch.Tensor:
    """<bos> doc <eos> <bos> doc <eos> ... as one int64 tensor (numpy keeps this fast)."""
    parts = []
    for _, text in docs:
        parts += [np.array([BOS]), np.frombuffer(text.encode("utf-8"), dtype=np.uint8), np.array([EOS])]
    return torch.from_numpy(np.concatenate(parts).astype(np.int64)) if parts else torch.zeros(0, dtype=torch.int64)


def _token_stream(docs: list[tuple[str, str]], tokenizer) -> torch.Tensor:
    """[bos] doc <eos> ... with a model's own tokenizer (``edge.tokenizer.Tokenizer``)."""
    enc = tokenizer.hf.encode_batch([text for _, text in docs], add_special_tokens=False)
    bos = [tokenizer.bos_id] if tokenizer.bos_id is not None and tokenizer.add_bos else []
    eos = tokenizer.eos_ids[:1]
    ids = [i for e in enc for i in (*bos, *e.ids, *eos)]
    return torch.tensor(ids, dtype=torch.int64)


def load_corpus(path: Path | None = None, max_bytes: int | None = None, tokenizer=None) -> Corpus:
    """The default corpus (path None) or a user's file/folder, split into train/val.

    ``tokenizer`` (an ``edge.tokenizer.Tokenizer``; None or the byte tokenizer: UTF-8 bytes)
    gives the token ids: use the model's own. The same documents are held out whatever the
    tokenizer, so calibration and training text never overlap the validation text. The default
    corpus is read once per process (it cannot change while Python runs); a user's files are read
    on every call."""
    tok = None if tokenizer is None or getattr(tokenizer, "name", None) == "bytes" else tokenizer
    if max_bytes is None:
        max_bytes = DEFAULT_MAX_BYTES if tok is None else TOKENIZED_MAX_BYTES
    if path is not None:
        return _split(_user_documents(path), str(path), tok)
    if tok is None:
        return _default_corpus(max_bytes)
    key = (max_bytes, tok.hf.to_str(), tok.bos_id, tuple(tok.eos_ids), tok.add_bos)
    if key not in _TOKENIZED:
        _TOKENIZED.clear()  # one tokenized corpus kept per process (a real model's is large)
        _TOKENIZED[key] = _split(_default_documents(max_bytes), DEFAULT_SOURCE, tok)
    return _TOKENIZED[key]


DEFAULT_SOURCE = "default corpus (pydoc topics + Python stdlib sources)"
_TOKENIZED: dict[tuple, Corpus] = {}


@functools.lru_cache(maxsize=2)
def _default_corpus(max_bytes: int) -> Corpus:
    return _split(_default_documents(max_bytes), DEFAULT_SOURCE)


def _fallback_held(docs: list[tuple[str, str]], score: dict[str, int]) -> set[str]:
    """Few documents, none (or all) scored into validation: the lowest-scored ones until they hold
    VAL_FRACTION of the text, never all. By bytes and names, so every tokenizer holds out the same."""
    total, held, size = sum(len(t) for _, t in docs), set(), 0
    for name, text in sorted(docs, key=lambda d: score[d[0]])[:-1]:
        held.add(name)
        size += len(text)
        if size >= VAL_FRACTION * total:
            break
    return held


def _split(docs: list[tuple[str, str]], source: str, tokenizer=None) -> Corpus:
    stream = _stream if tokenizer is None else (lambda d: _token_stream(d, tokenizer))
    if len(docs) == 1:  # a single file: hold out its tail
        full = stream(docs)
        cut = int(len(full) * (1 - VAL_FRACTION))
        tr, va = full[:cut], full[cut:]
    else:
        score = {name: _hash("val:" + name) % 10_000 for name, _ in docs}
        held = {n for n, v in score.items() if v < VAL_FRACTION * 10_000}
        if not held or len(held) == len(docs):
            held = _fallback_held(docs, score)
        tr = stream([d for d in docs if d[0] not in held])
        va = stream([d for d in docs if d[0] in held])
    digest = hashlib.sha256()
    for name, text in docs:
        digest.update(name.encode() + b"\0" + text.encode("utf-8"))
    return Corpus(tr, va, source, len(docs), digest.hexdigest())


def random_batch(stream: torch.Tensor, batch: int, seq_len: int, gen: torch.Generator):
    """(inputs, targets), each (batch, seq_len), from random windows of ``stream``."""
    starts = torch.randint(0, len(stream) - seq_len - 1, (batch,), generator=gen)
    idx = starts[:, None] + torch.arange(seq_len + 1)[None, :]  # (batch, seq_len + 1)
    windows = stream[idx]
    return windows[:, :-1], windows[:, 1:]


def eval_batches(stream: torch.Tensor, seq_len: int, max_tokens: int, batch: int = 16):
    """Deterministic non-overlapping windows covering up to ``max_tokens`` of ``stream``."""
    n = min((len(stream) - 1) // seq_len, max(1, max_tokens // seq_len))
    windows = torch.stack([stream[i * seq_len: i * seq_len + seq_len + 1] for i in range(n)])
    for i in range(0, n, batch):
        w = windows[i: i + batch]
        yield w[:, :-1], w[:, 1:]
