"""ExecuTorch decode ms/token of the ways a .pte can be written, side by side, interleaved.

Variants (random weights of --preset: latency does not depend on their values):

* ``old``    : the former two-method program, prefill(tokens) + decode(token, position)
               (exporters/decoding.py's buffer wrapper), default ExecutorchBackendConfig.
* ``old_rp`` : the same with ``run_reinplace_pass=True``.
* ``aten``   : what `matedge export` writes now, forward(tokens, input_pos), plain ops.
* ``llama``  : forward(tokens, input_pos) with ExecuTorch's LLM custom ops
               (llama::update_cache + llama::custom_sdpa over the filled prefix only).

Each variant decodes at positions after a --prompt-tokens prefill, on 1 thread; rounds are
interleaved so that a shared machine's load hits every variant alike. Printed per variant:
the median over rounds of each round's median and of each round's minimum (on a busy machine
the minimum is the steadier figure).

    python bench/executorch_decode.py [--preset small] [--specs S,XL] [--precisions fp32,int8]
                                      [--variants old,old_rp,aten,llama] [--out DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from edge.config import MatFormerConfig  # noqa: E402
from edge.model import MatFormerLM  # noqa: E402
from edge.slicing import slice_model  # noqa: E402
from edge.texttable import format_table  # noqa: E402

VARIANTS = ("old", "old_rp", "aten", "llama")


def export_old(dense, precision: str, path: Path, context: int, prompt: int, reinplace: bool) -> None:
    """The former prefill + decode program (static prompt length)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from exporters import executorch as et
    from exporters.decoding import entry_modules, example_inputs, make_wrapper

    wrapper = make_wrapper(dense, context, "buffers", prompt)
    et._quantize(wrapper, precision)
    modules, args = entry_modules(wrapper), example_inputs(wrapper, prompt)
    with torch.no_grad():
        programs = {n: torch.export.export(modules[n], a, strict=False) for n, a in args.items()}
    edge = to_edge_transform_and_lower(programs, partitioner=[XnnpackPartitioner()])
    path.write_bytes(edge.to_executorch(et.backend_config(precision, reinplace=reinplace)).buffer)


def decode_step(path: Path, variant: str, context: int, prompt: int):
    """A function running one decode step (positions cycle through prompt..context-1)."""
    from executorch.runtime import Runtime

    from exporters.executorch import load_kernels

    load_kernels()
    program = Runtime.get().load_program(path)
    token, positions = torch.tensor([[5]]), [torch.tensor([p]) for p in range(prompt, context)]
    if variant.startswith("old"):
        program.load_method("prefill").execute([torch.zeros(1, prompt, dtype=torch.long)])
        method = program.load_method("decode")
    else:
        method = program.load_method("forward")
        method.execute([torch.zeros(1, prompt, dtype=torch.long), torch.tensor([0])])
    state = {"i": 0}

    def step():
        method.execute([token, positions[state["i"] % len(positions)]])
        state["i"] += 1
    return step


def measure(steps: dict, rounds: int, runs: int, warmup: int) -> dict:
    """{key: (median of round medians, median of round minima)} in ms, rounds interleaved."""
    medians, minima = {k: [] for k in steps}, {k: [] for k in steps}
    for _ in range(rounds):
        for key, step in steps.items():
            for _ in range(warmup):
                step()
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                step()
                times.append((time.perf_counter() - t) * 1e3)
            medians[key].append(statistics.median(times))
            minima[key].append(min(times))
    return {k: (statistics.median(medians[k]), statistics.median(minima[k])) for k in steps}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small", help="model dims (random weights; default: small, the demo's)")
    p.add_argument("--specs", default="S,XL")
    p.add_argument("--precisions", default="fp32,int8")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--prompt-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--out", help="keep (and reuse) the .pte files here (default: a temporary folder)")
    args = p.parse_args(argv)
    from exporters import executorch as et
    from exporters.llm_forward import load_llama_ops

    load_llama_ops()
    torch.set_num_threads(1)
    et.set_threads(1)
    torch.manual_seed(0)
    model = MatFormerLM(MatFormerConfig.from_preset(args.preset)).eval()
    context = model.config.max_context
    if not 0 < args.prompt_tokens < context:
        p.error(f"--prompt-tokens {args.prompt_tokens}: the {args.preset} model holds {context} positions "
                f"(give 1..{context - 1})")
    with tempfile.TemporaryDirectory(prefix="et-decode-") as tmp:
        out = Path(args.out or tmp)
        out.mkdir(parents=True, exist_ok=True)
        steps = {}
        for g in args.specs.split(","):
            dense = slice_model(model, (g,) * model.config.n_layers)
            for precision in args.precisions.split(","):
                for variant in args.variants.split(","):
                    path = out / f"{g}-{precision}-{variant}.pte"
                    if not path.exists():
                        if variant.startswith("old"):
                            export_old(dense, precision, path, context, args.prompt_tokens, variant == "old_rp")
                        else:
                            et.export(dense, precision, path, context=context, ops=variant)
                    steps[(g, precision, variant)] = decode_step(path, variant, context, args.prompt_tokens)
        result = measure(steps, args.rounds, args.runs, warmup=20)
    rows = [[*k, med, low] for k, (med, low) in result.items()]
    print(f"{args.preset} dims, context {context}, decode after a {args.prompt_tokens}-token prompt, 1 thread, "
          f"{args.rounds} interleaved rounds x {args.runs} runs")
    print(format_table(["spec", "precision", "variant", "median ms/token", "min ms/token"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
