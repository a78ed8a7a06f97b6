"""Pack a ``.litertlm`` (LiteRT-LM's bundle) with Google's own builder, ``litert-lm-builder``.

A ``.litertlm`` is what LiteRT-LM's ``Engine`` (and the AI Edge Gallery / LiteRT-LM apps built on
it) opens: one TFLite model of type ``prefill_decode`` (signatures from exporters/litert_lm.py),
the HF ``tokenizer.json`` (stored zlib-compressed by the builder) and an ``LlmMetadata`` proto:

* ``start_token``: the tokenizer's BOS id, when its post-processor adds one (LiteRT-LM prepends it);
* ``stop_tokens``: every EOS id; ``max_num_tokens``: the artifact's context;
* ``jinja_prompt_template``: the tokenizer's chat template when it has one (without one the
  runtime feeds the prompt as it is);
* ``llm_model_type``: ``generic_model`` (no model-specific pre/post-processing).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from exporters.base import require

EXTRA = "litert"


def llm_metadata(tokenizer, max_tokens: int):
    """The ``LlmMetadata`` proto for a tokenizer (edge.tokenizer.Tokenizer) and a context size."""
    require("litert_lm_builder", EXTRA, "packing a .litertlm")
    from litert_lm_builder.runtime.proto import llm_metadata_pb2, llm_model_type_pb2

    meta = llm_metadata_pb2.LlmMetadata()
    if tokenizer.add_bos and tokenizer.bos_id is not None:
        meta.start_token.token_ids.ids.append(int(tokenizer.bos_id))
    for eos in tokenizer.eos_ids:
        meta.stop_tokens.add().token_ids.ids.append(int(eos))
    meta.max_num_tokens = int(max_tokens)
    meta.llm_model_type.CopyFrom(llm_model_type_pb2.LlmModelType(generic_model=llm_model_type_pb2.GenericModel()))
    if tokenizer.chat_template:
        meta.jinja_prompt_template = tokenizer.chat_template
    return meta


def pack(tflite_path: Path, tokenizer_json: Path, tokenizer, out_path: Path, *, max_tokens: int) -> Path:
    """Write ``out_path`` (.litertlm) from a prefill_decode .tflite and the HF tokenizer.json.

    Written to a temporary sibling and renamed into place; the metadata proto goes through a
    temporary file because the builder reads it from a path.
    """
    builder_mod = require("litert_lm_builder", EXTRA, "packing a .litertlm")
    out_path = Path(out_path)
    meta = llm_metadata(tokenizer, max_tokens)
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    with tempfile.TemporaryDirectory() as work:
        meta_path = Path(work) / "llm_metadata.pb"
        meta_path.write_bytes(meta.SerializeToString())
        builder = builder_mod.LitertLmFileBuilder()
        builder.add_system_metadata(builder_mod.Metadata(
            key="Authors", value="matformer-edge", dtype=builder_mod.DType.STRING))
        builder.add_llm_metadata(str(meta_path))
        builder.add_hf_tokenizer(str(tokenizer_json))
        builder.add_tflite_model(str(tflite_path), builder_mod.TfLiteModelType.PREFILL_DECODE)
        try:
            with open(tmp, "wb") as f:
                builder.build(f)
            os.replace(tmp, out_path)
        finally:
            if tmp.exists():
                tmp.unlink()
    return out_path


def peek(path: Path) -> str:
    """The builder's own text dump of a .litertlm's sections and metadata (for checks and tests)."""
    import io

    builder_mod = require("litert_lm_builder", EXTRA, "reading a .litertlm")
    out = io.StringIO()
    builder_mod.peek_litertlm_file(str(path), None, out)
    return out.getvalue()
