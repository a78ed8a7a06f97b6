"""An HF ``tokenizers`` tokenizer rebuilt from a GGUF file's ``tokenizer.ggml.*`` metadata.

GGUF stores a byte-level BPE as its token strings (already in GPT-2's byte-to-unicode alphabet),
the merges ("a b" strings), a type per token (3 = control, 4 = user-defined) and a pre-tokenizer
name. llama.cpp splits text with a regex chosen by that name; the same splits are expressed with
``tokenizers`` pre-tokenizers below, so ids equal llama.cpp's (checked on SmolLM2: 20,481 tokens).
"""

from __future__ import annotations

from edge.importers.llama import ImportFailed
from edge.tokenizer import Tokenizer

CONTROL, USER_DEFINED = 3, 4
# llama.cpp's LLAMA3 split regex (also in Meta's tokenizer.json).
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
DIGITS_FIRST = ("smollm", "starcoder", "refact", "codeshell", "exaone", "minerva", "command-r")
GPT2 = ("default", "gpt-2", "gpt2")
LLAMA3 = ("llama-bpe", "llama3")


def _pre_tokenizer(pre: str, source: str):
    """The split rule llama.cpp uses for pre-tokenizer ``pre`` (GPT-2 regex variants)."""
    from tokenizers import Regex, pre_tokenizers as pt

    if pre in DIGITS_FIRST:  # each digit alone, then GPT-2's regex
        return pt.Sequence([pt.Digits(individual_digits=True), pt.ByteLevel(add_prefix_space=False, use_regex=True)])
    if pre in GPT2:
        return pt.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in LLAMA3:
        return pt.Sequence([pt.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
                            pt.ByteLevel(add_prefix_space=False, use_regex=False)])
    raise ImportFailed(f"{source}: tokenizer pre-tokenizer {pre!r} is not supported "
                       f"(supported: {', '.join(DIGITS_FIRST + GPT2 + LLAMA3)})")


def gguf_tokenizer(reader, source: str) -> Tokenizer:
    """The file's byte-level BPE as a ``Tokenizer`` (special ids, BOS rule and chat template)."""
    from tokenizers import AddedToken, Tokenizer as HFTokenizer, decoders, models, processors

    def field(key, default=None):
        f = reader.fields.get(f"tokenizer.ggml.{key}")
        return default if f is None else f.contents()

    kind = field("model")
    if kind != "gpt2":
        raise ImportFailed(f"{source}: tokenizer model {kind!r} is not supported (supported: 'gpt2', a byte-level "
                           f"BPE; a SentencePiece 'llama' tokenizer is not)")
    tokens, types = field("tokens"), field("token_type", [])
    merges = [tuple(m.split(" ", 1)) for m in field("merges", [])]
    pre = field("pre", "default")
    vocab = {t: i for i, t in enumerate(tokens)}
    for m in merges:  # tokenizers panics (no exception) on a merge outside the vocabulary
        if len(m) != 2 or m[0] not in vocab or m[1] not in vocab or m[0] + m[1] not in vocab:
            raise ImportFailed(f"{source}: tokenizer merge {' '.join(m)!r} names a token the vocabulary lacks "
                               f"(a merge's two parts and their join must be tokens)")
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=pre in LLAMA3))
    hf.pre_tokenizer = _pre_tokenizer(pre, source)
    hf.decoder = decoders.ByteLevel()
    added = [AddedToken(tokens[i], special=t == CONTROL, normalized=False)
             for i, t in enumerate(types) if t in (CONTROL, USER_DEFINED)]
    hf.add_tokens([a for a in added if not a.special])
    hf.add_special_tokens([a for a in added if a.special])
    ids = lambda key: field(f"{key}_token_id")  # noqa: E731
    bos, eos, pad = ids("bos"), ids("eos"), ids("padding")
    add_bos = bool(field("add_bos_token", False)) and bos is not None
    if add_bos:  # runtimes add BOS only when the post-processor does
        hf.post_processor = processors.TemplateProcessing(single=f"{tokens[bos]} $A", special_tokens=[(tokens[bos], bos)])
    eos_ids = [i for i in dict.fromkeys([eos, ids("eot"), ids("eom")]) if i is not None]
    template = reader.fields.get("tokenizer.chat_template")
    return Tokenizer(hf, bos_id=bos, eos_ids=eos_ids, pad_id=pad, add_bos=add_bos,
                     chat_template=None if template is None else template.contents(), name=str(pre))
