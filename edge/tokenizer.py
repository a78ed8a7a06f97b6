"""The model's tokenizer: a Hugging Face ``tokenizers.Tokenizer`` plus its special ids.

Every checkpoint and artifact carries ``tokenizer.json`` (the HF format that ExecuTorch's LLM
runner, LiteRT-LM, ``@huggingface/tokenizers`` in the browser and transformers all read) and
``tokenizer_config.json`` (bos/eos/pad tokens, whether BOS is added, the chat template).

The default toy model's byte-level tokenizer is expressed in the same format: a byte-level BPE
with no merges whose vocabulary maps byte b to id b (0..255), and the specials
``<pad> <bos> <eos> <sep>`` at ids 256..259. Its post-processor prepends ``<bos>``, as training
did, so runtimes that "add BOS only when the post-processor does" get the same ids.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from edge.errors import MatEdgeError
from edge.inputs import read_json

TOKENIZER_JSON, TOKENIZER_CONFIG = "tokenizer.json", "tokenizer_config.json"
BYTE_SPECIALS = ("<pad>", "<bos>", "<eos>", "<sep>")  # ids 256..259


class TokenizerError(MatEdgeError):
    """A tokenizer file is missing, unreadable or does not name its special tokens."""


@dataclass
class Tokenizer:
    """An HF tokenizer with the ids a runner needs.

    ``hf`` is a ``tokenizers.Tokenizer``; ``bos_id``/``pad_id`` may be None (no such token);
    ``eos_ids`` lists every id that ends generation; ``add_bos`` says whether ``encode`` adds BOS
    by default (mirrors the tokenizer's post-processor).
    """
    hf: object
    bos_id: int | None
    eos_ids: list[int]
    pad_id: int | None
    add_bos: bool
    chat_template: str | None = None
    name: str = "custom"

    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer can produce (base vocabulary + added tokens)."""
        return int(self.hf.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str, bos: bool | None = None) -> list[int]:
        """Token ids of ``text``; ``bos`` None follows the tokenizer's own rule."""
        ids = self.hf.encode(text, add_special_tokens=False).ids
        add = self.add_bos if bos is None else bos
        return ([self.bos_id] if add and self.bos_id is not None else []) + list(ids)

    def decode(self, ids, skip_special: bool = True) -> str:
        """Text of ``ids`` (special tokens dropped unless ``skip_special`` is False)."""
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=skip_special)

    def chat_prompt(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The chat template rendered for ``messages`` ([{"role": ..., "content": ...}]), as
        transformers renders it (a sandboxed Jinja environment); TokenizerError if there is none."""
        if not self.chat_template:
            raise TokenizerError(f"tokenizer {self.name!r} has no chat template (use a plain prompt)")
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise TokenizerError(f"chat template: {message}")

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        tok = lambda i: None if i is None else self.hf.id_to_token(i)  # noqa: E731
        return env.from_string(self.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, bos_token=tok(self.bos_id) or "",
            eos_token=tok(self.eos_ids[0]) if self.eos_ids else "")

    def config_dict(self) -> dict:
        """The ``tokenizer_config.json`` content (HF field names, as runtimes read them)."""
        tok = lambda i: None if i is None else self.hf.id_to_token(i)  # noqa: E731
        return {"tokenizer_class": "PreTrainedTokenizerFast", "name": self.name,
                "bos_token": tok(self.bos_id), "eos_token": tok(self.eos_ids[0]) if self.eos_ids else None,
                "eos_token_ids": list(self.eos_ids), "pad_token": tok(self.pad_id),
                "add_bos_token": self.add_bos, "chat_template": self.chat_template}

    def describe(self) -> dict:
        """Short metadata for artifacts and manifests."""
        return {"file": TOKENIZER_JSON, "name": self.name, "vocab_size": self.vocab_size,
                "bos_id": self.bos_id, "eos_ids": list(self.eos_ids), "pad_id": self.pad_id,
                "add_bos": self.add_bos, "chat_template": self.chat_template is not None}

    def save(self, folder: Path) -> list[Path]:
        """Write ``tokenizer.json`` and ``tokenizer_config.json`` into ``folder``."""
        folder = Path(folder)
        paths = [folder / TOKENIZER_JSON, folder / TOKENIZER_CONFIG]
        self.hf.save(str(paths[0]))
        paths[1].write_text(json.dumps(self.config_dict(), indent=2) + "\n")
        return paths


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map, which the ByteLevel pre-tokenizer uses."""
    from tokenizers.pre_tokenizers import ByteLevel

    chars = ByteLevel.alphabet()  # the 256 characters, unordered
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    mapping, n = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + n)
            n += 1
    assert set(mapping.values()) == set(chars), "ByteLevel alphabet changed"
    return mapping


def byte_tokenizer() -> Tokenizer:
    """The default toy model's tokenizer: ids 0..255 are UTF-8 bytes, 256..259 the specials."""
    from tokenizers import AddedToken, Tokenizer as HFTokenizer, decoders, models, pre_tokenizers, processors

    vocab = {ch: b for b, ch in _bytes_to_unicode().items()}
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=[]))
    # No regex split: every byte is its own token, exactly as `text.encode("utf-8")`.
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in BYTE_SPECIALS])
    hf.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A <sep> $B",
                                                      special_tokens=[("<bos>", 257), ("<sep>", 259)])
    return Tokenizer(hf, bos_id=257, eos_ids=[258], pad_id=256, add_bos=True, name="bytes")


def stand_in_tokenizer(vocab_size: int) -> Tokenizer:
    """A tokenizer with exactly ``vocab_size`` ids for timing-only exports of random-weight models
    (the profiler's micro-models): the byte tokenizer when the sizes match, else a word-level one
    whose tokens are ``<0>``, ``<1>``, ... (runtimes that pack a tokenizer need one; its text is
    never read)."""
    from tokenizers import Tokenizer as HFTokenizer, models, pre_tokenizers

    if vocab_size == len(BYTE_SPECIALS) + 256:
        return byte_tokenizer()
    hf = HFTokenizer(models.WordLevel(vocab={f"<{i}>": i for i in range(vocab_size)}, unk_token="<0>"))
    hf.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return Tokenizer(hf, bos_id=None, eos_ids=[vocab_size - 1], pad_id=None, add_bos=False, name="stand-in")


def _special_id(hf, token: str | None) -> int | None:
    return None if token is None else hf.token_to_id(token)


def load_tokenizer(folder: Path) -> Tokenizer:
    """Load ``tokenizer.json`` (+ ``tokenizer_config.json``) from a checkpoint or artifact folder.

    A folder without ``tokenizer.json`` is an older checkpoint of the byte-level model: it gets
    the byte tokenizer. Special ids come from the config's token names, else from added-token
    names containing bos/eos/pad (the rule ExecuTorch's runner uses).
    """
    from tokenizers import Tokenizer as HFTokenizer

    folder = Path(folder)
    path = folder / TOKENIZER_JSON
    if not path.exists():
        return byte_tokenizer()
    if not path.is_file():
        raise TokenizerError(f"{str(path)!r} is not a file (expected an HF tokenizer.json)")
    try:
        hf = HFTokenizer.from_file(str(path))
    except Exception as e:  # the Rust library raises plain Exception subclasses
        raise TokenizerError(f"{str(path)!r} is not a readable HF tokenizer.json ({str(e)[:120]})") from None
    cfg = _read_config(folder / TOKENIZER_CONFIG)
    bos = _special_id(hf, cfg.get("bos_token")) if "bos_token" in cfg else _guess(hf, ("bos", "begin"))
    pad = _special_id(hf, cfg.get("pad_token")) if "pad_token" in cfg else _guess(hf, ("pad",))
    eos_ids = cfg.get("eos_token_ids") or [i for i in [_special_id(hf, cfg.get("eos_token"))] if i is not None]
    if not eos_ids:
        eos_ids = [i for i in [_guess(hf, ("eos", "end"))] if i is not None]
    if not all(isinstance(i, int) and 0 <= i < hf.get_vocab_size(with_added_tokens=True) for i in eos_ids):
        raise TokenizerError(f"{str(folder / TOKENIZER_CONFIG)!r}: eos_token_ids must be ids of the vocabulary")
    add_bos = bool(cfg.get("add_bos_token", False))
    return Tokenizer(hf, bos_id=bos, eos_ids=list(eos_ids), pad_id=pad, add_bos=add_bos,
                     chat_template=cfg.get("chat_template"), name=str(cfg.get("name", "custom")))


def _read_config(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        cfg = read_json(path, "tokenizer config")  # bounded regular file: a FIFO there never blocks
    except MatEdgeError as e:
        raise TokenizerError(str(e)) from None
    if not isinstance(cfg, dict):
        raise TokenizerError(f"{str(path)!r} must hold a JSON object")
    for key in ("bos_token", "eos_token", "pad_token", "chat_template", "name"):
        if cfg.get(key) is not None and not isinstance(cfg[key], str):
            # HF also allows {"content": ...} dicts for tokens
            if isinstance(cfg[key], dict) and isinstance(cfg[key].get("content"), str):
                cfg[key] = cfg[key]["content"]
            else:
                raise TokenizerError(f"{str(path)!r}: {key} must be a string")
    return cfg


def _guess(hf, words: tuple[str, ...]) -> int | None:
    """The first special added token whose name contains one of ``words``."""
    for tid, tok in sorted(hf.get_added_tokens_decoder().items()):
        if tok.special and any(w in tok.content.lower() for w in words):
            return tid
    return None


def tokenizer_files(folder: Path) -> list[Path]:
    """The tokenizer files present in ``folder`` (to copy beside an artifact)."""
    return [p for p in (Path(folder) / TOKENIZER_JSON, Path(folder) / TOKENIZER_CONFIG) if os.path.isfile(p)]
