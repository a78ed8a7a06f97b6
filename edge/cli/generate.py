"""matedge generate: greedy text from a checkpoint at any spec, through its own tokenizer."""

from __future__ import annotations

from edge.cli.common import add_checkpoint

HELP = "greedy generation from a spec, with the checkpoint's tokenizer (and chat template)"
DESCRIPTION = """\
  matedge generate runs/smollm2-mat --spec M --chat "What is the capital of France?"
  matedge generate --prompt "def main(" --max-new-tokens 64

Runs eager PyTorch with a KV cache (edge/generate.py); stops at the tokenizer's end token."""


def configure(p) -> None:
    add_checkpoint(p)
    p.add_argument("--spec", help='per-layer granularities (default: the largest, e.g. "XL")')
    text = p.add_mutually_exclusive_group(required=True)
    text.add_argument("--prompt", help="plain text to continue")
    text.add_argument("--chat", metavar="MESSAGE", help="one user message, formatted with the chat template")
    p.add_argument("--max-new-tokens", type=int, default=48, help="default: 48")


def run(args) -> int:
    from edge.checkpoint import load_any, load_tokenizer
    from edge.errors import MatEdgeError
    from edge.generate import greedy_generate
    from edge.spec import parse_spec

    model, folder = load_any(args.checkpoint)
    tok = load_tokenizer(folder)
    spec = parse_spec(args.spec, model.config) if args.spec and model.config.is_universal else None
    text = tok.chat_prompt([{"role": "user", "content": args.chat}]) if args.chat else args.prompt
    prompt = tok.encode(text)
    if not 1 <= args.max_new_tokens or len(prompt) + args.max_new_tokens > model.config.max_context:
        raise MatEdgeError(f"--max-new-tokens {args.max_new_tokens}: prompt ({len(prompt)} tokens) + new tokens must "
                           f"fit max_context {model.config.max_context}")
    out = greedy_generate(model, prompt, args.max_new_tokens, spec)
    ends = [i for i, t in enumerate(out) if t in tok.eos_ids]
    print(tok.decode(out[: ends[0]] if ends else out))
    return 0
