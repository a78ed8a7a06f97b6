"""The three LiteRT decode graphs bench/litert_decode.py compares, each converted once per file.

A file that already exists is reused (``--work`` keeps them between runs).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import torch


def _quant(precision: str) -> dict:
    if precision == "fp32":
        return {}
    from litert_torch.generative.quantize import quant_recipes

    return {"quant_config": quant_recipes.full_dynamic_recipe()}


def convert_litert_lm(dense, precision: str, out: Path, context: int, prefill: int) -> Path:
    """The exporter's own output (exporters.litert.export): .tflite + .litertlm beside it."""
    from exporters import litert

    if not out.exists():
        litert.export(dense, precision, out, context=context, prefill_len=prefill)
    return out


def convert_io_cache(dense, precision: str, out: Path, context: int, prefill: int) -> Path:
    """The previous exporter's graph: prefill(tokens) / decode(token, position, k_cache, v_cache)."""
    import litert_torch

    from exporters.decoding import entry_modules, example_inputs, make_wrapper

    if not out.exists():
        wrapper = make_wrapper(dense, context, "io", prefill)
        args, mods = example_inputs(wrapper, prefill), entry_modules(wrapper)
        with torch.no_grad():
            conv = litert_torch.signature("prefill", mods["prefill"], args["prefill"])
            conv.signature("decode", mods["decode"], args["decode"]).convert(**_quant(precision)).export(str(out))
    return out


def _generative_modules():
    """litert-torch's generative layers. Its lora module imports ``tensorflow.lite.python.
    schema_py_generated`` (tensorflow is not installed); ai_edge_litert ships the same generated
    schema, mapped in for the import only (bench code, never the project's)."""
    import litert_torch  # noqa: F401  (torch and its dynamo import first: they probe real modules)
    import ai_edge_litert.schema_py_generated as schema

    fakes = ("tensorflow", "tensorflow.lite", "tensorflow.lite.python")
    for name in fakes:
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["tensorflow.lite.python.schema_py_generated"] = schema
    try:
        import litert_torch.generative.layers.model_config as cfg
        from litert_torch.generative.layers import kv_cache
        from litert_torch.generative.utilities import converter, export_config, model_builder
    finally:
        for name in (*fakes, "tensorflow.lite.python.schema_py_generated"):
            sys.modules.pop(name, None)
    return cfg, kv_cache, converter, export_config, model_builder


def convert_generative(dense, precision: str, out: Path, context: int, prefill: int) -> Path:
    """A DecoderOnlyModel of the same dims (random weights: timing only), exported the way
    litert-torch's LLM examples are: transposed KV layout, mask as an input."""
    if out.exists():
        return out
    cfg, kv_cache, converter, export_config, model_builder = _generative_modules()
    c = dense.config
    norm = cfg.NormalizationConfig(type=cfg.NormalizationType.RMS_NORM)
    block = cfg.TransformerBlockConfig(
        attn_config=cfg.AttentionConfig(num_heads=c.n_heads, head_dim=c.head_dim, num_query_groups=c.n_kv_heads,
                                        rotary_base=int(c.rope_base), rotary_percentage=1.0),
        ff_config=cfg.FeedForwardConfig(type=cfg.FeedForwardType.GATED, intermediate_size=c.layer_ffn_sizes()[0],
                                        activation=cfg.ActivationConfig(cfg.ActivationType.SILU)),
        pre_attention_norm_config=norm, post_attention_norm_config=norm)
    config = cfg.ModelConfig(vocab_size=c.vocab_size, num_layers=c.n_layers, max_seq_len=context,
                             embedding_dim=c.d_model, block_configs=block, final_norm_config=norm,
                             lm_head_share_weight_with_embedding=c.tie_embeddings)
    torch.manual_seed(0)
    model = model_builder.DecoderOnlyModel(config).eval()
    export = export_config.ExportConfig(mask_as_input=True, kvcache_layout=kv_cache.KV_LAYOUT_TRANSPOSED)
    written = converter.convert_to_tflite(model, str(out.parent), out.stem, [prefill], context,
                                          quantize="none" if precision == "fp32" else "dynamic_int8",
                                          config=config, export_config=export)
    Path(written).rename(out)
    return out
