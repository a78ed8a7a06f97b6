"""matedge run: generate text from an artifact through the stock runtime that matches it."""

from __future__ import annotations

import sys

from edge.inputs import int_arg, positive_float_arg

HELP = "generate text from a .pte or .litertlm through ExecuTorch's / LiteRT-LM's own LLM runtime"
DESCRIPTION = """\
Generate text on this machine from an exported artifact, through the same runtime a phone app
uses: a .pte through ExecuTorch's LLM runner (TextLLMRunner, with the tokenizer.json beside it),
a .litertlm through LiteRT-LM's Engine. Greedy decoding; tokens stream to stdout as they are
made, and the figures (time to first token, ms/token) go to stderr. The runtimes' own log lines
are hidden (--verbose shows them; when a run fails, the error names the log that holds them).
A bare .tflite has no tokenizer or generation loop: run the .litertlm written beside it.

Elastic artifacts (`matedge build --elastic`: elastic.pte, elastic.tflite) hold several members
over one KV cache. Without options a stock runner runs the .pte's default member; with one of
--member, --switch-every or --target-ms this project's elastic runner picks the member for every
token (greedy, the tokenizer.json beside the file) and stderr says which members made the text:

  matedge run build/host/elastic.pte --prompt "def " --member S
  matedge run build/host/elastic.pte --prompt "def " --switch-every 16 --members S,XL
  matedge run build/phone/elastic.tflite --prompt "def " --target-ms 2.5

--chat MESSAGE wraps one user message in the model's chat template (the tokenizer_config.json
beside the artifact, as `matedge export` writes it for a model that has one), as a chat app does:

  matedge run build/host/model.pte --chat "What is the capital of France?"
"""


def configure(p) -> None:
    p.add_argument("artifact", metavar="ARTIFACT", help="a .pte or .litertlm file")
    text = p.add_mutually_exclusive_group(required=True)
    text.add_argument("--prompt", help="the text to continue, as it is")
    text.add_argument("--chat", metavar="MESSAGE",
                      help="one user message, formatted with the model's chat template")
    p.add_argument("--max-new-tokens", type=int_arg(1, 1 << 20), default=64,
                   help="tokens to generate at most (default: 64)")
    p.add_argument("--threads", type=int_arg(1, 256), default=1, help="CPU threads of the runtime (default: 1)")
    p.add_argument("--verbose", action="store_true", help="show the runtime's own log lines on stderr")
    el = p.add_argument_group("elastic artifacts (one of these)")
    el.add_argument("--member", metavar="NAME", help="run this member for every token")
    el.add_argument("--switch-every", type=int_arg(1, 1 << 20), metavar="N",
                    help="change member every N tokens, cycling through --members")
    el.add_argument("--members", metavar="A,B", help="members --switch-every cycles through (default: all, cheapest first)")
    el.add_argument("--target-ms", type=positive_float_arg(1e6), metavar="MS",
                    help="hold this decode time: the latency controller steps down/up the members")


def run(args) -> int:
    from edge.device.elastic_run import check_elastic_path
    from edge.device.stock_run import check_artifact, generate

    policy = elastic_policy(args)
    # the file first: --chat reads the tokenizer beside it
    path = check_elastic_path(args.artifact) if policy is not None else check_artifact(args.artifact)
    args.prompt = prompt_text(args)
    if policy is not None:
        return run_elastic(args, policy)
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


def prompt_text(args) -> str:
    """The text to generate after: --prompt as it is, or --chat rendered with the chat template of
    the tokenizer beside the artifact (RunError when there is none)."""
    from pathlib import Path

    from edge.device.stock_run import RunError, tokenizer_beside
    from edge.tokenizer import load_tokenizer

    if args.chat is None:
        return args.prompt
    path = Path(args.artifact)
    tok = load_tokenizer(tokenizer_beside(path).parent)
    if not tok.chat_template:
        raise RunError(f"the tokenizer beside {path.name} has no chat template (tokenizer_config.json: "
                       "chat_template): give --prompt instead")
    return tok.chat_prompt([{"role": "user", "content": args.chat}])


def elastic_policy(args):
    """The elastic Policy the options ask for, None for a stock run; RunError when they conflict."""
    from edge.device.elastic_run import Policy
    from edge.device.stock_run import RunError

    chosen = [o for o, v in (("--member", args.member), ("--switch-every", args.switch_every),
                             ("--target-ms", args.target_ms)) if v is not None]
    if len(chosen) > 1:
        raise RunError(f"{' and '.join(chosen)} conflict: give one way of choosing the member")
    if args.members is not None and args.switch_every is None:
        raise RunError("--members goes with --switch-every (the members it cycles through)")
    if not chosen:
        return None
    members = [m.strip() for m in (args.members or "").split(",") if m.strip()]
    return Policy(member=args.member, every=args.switch_every, members=members, target_ms=args.target_ms)


def run_elastic(args, policy) -> int:
    """Generate with the project's elastic runner; the member mix goes to stderr."""
    from edge.device.elastic_run import generate_elastic

    def stream(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    r = generate_elastic(args.artifact, args.prompt, args.max_new_tokens, policy, args.threads,
                         on_piece=stream, show_logs=args.verbose)
    sys.stdout.write("\n")
    print(f"{r.runtime}: {len(r.members_used)} tokens, time to first token {r.ttft_ms:.1f} ms, "
          f"{r.ms_per_token:.3f} ms/token, {args.threads} thread(s); members {r.mix()}", file=sys.stderr)
    return 0
