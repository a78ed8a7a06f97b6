"""matedge run: generate text from an artifact through the stock runtime that matches it."""

from __future__ import annotations

import sys

from edge.inputs import int_arg

HELP = "generate text from a .pte or .litertlm through ExecuTorch's / LiteRT-LM's own LLM runtime"
DESCRIPTION = """\
Generate text on this machine from an exported artifact, through the same runtime a phone app
uses: a .pte through ExecuTorch's LLM runner (TextLLMRunner, with the tokenizer.json beside it),
a .litertlm through LiteRT-LM's Engine. Greedy decoding; tokens stream to stdout as they are
made, and the figures (time to first token, ms/token) go to stderr. The runtimes' own log lines
are hidden (--verbose shows them; when a run fails, the error names the log that holds them).
A bare .tflite has no tokenizer or generation loop: run the .litertlm written beside it."""


def configure(p) -> None:
    p.add_argument("artifact", metavar="ARTIFACT", help="a .pte or .litertlm file")
    p.add_argument("--prompt", required=True, help="the text to continue")
    p.add_argument("--max-new-tokens", type=int_arg(1, 1 << 20), default=64,
                   help="tokens to generate at most (default: 64)")
    p.add_argument("--threads", type=int_arg(1, 256), default=1, help="CPU threads of the runtime (default: 1)")
    p.add_argument("--verbose", action="store_true", help="show the runtime's own log lines on stderr")


def run(args) -> int:
    from edge.device.stock_run import check_artifact, generate

    path = check_artifact(args.artifact)
    if path.suffix == ".litertlm" and not args.verbose:
        from exporters.logs import hide_stderr_at_exit

        hide_stderr_at_exit()  # LiteRT-LM's last environment logs its teardown after we exit

    def stream(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    result = generate(args.artifact, args.prompt, args.max_new_tokens, args.threads, on_piece=stream,
                      show_logs=args.verbose)
    sys.stdout.write("\n")
    print(f"{result.runtime}: {result.tokens} tokens, time to first token {result.ttft_ms:.1f} ms, "
          f"{result.ms_per_token:.3f} ms/token, {args.threads} thread(s)", file=sys.stderr)
    return 0
