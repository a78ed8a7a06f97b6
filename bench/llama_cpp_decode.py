"""llama.cpp on the same weights: decode ms/token of a submodel in llama.cpp's `llama-bench`.

A uniform spec of a universal checkpoint is sliced to a dense Llama (edge.slicing) and written
as a GGUF file of the ``llama`` architecture with gguf-py (F32, or Q8_0 beside the int8 .pte):
the Q/K rows permuted the way llama.cpp's converter does (its RoPE rotates interleaved pairs,
edge.model rotates halves), the tied embedding as ``token_embd``. The vocabulary entries are
a byte-level BPE (GPT-2's symbol per byte for ids 0-255, ``<|id|>`` placeholders past them, one
merge): the demo model's byte tokenizer, up to its specials (llama-bench feeds token ids; the
vocabulary size is what costs). Before timing, the file is read back with the project's GGUF
importer and its logits must equal the sliced model's (F32). llama-bench then decodes ``--tokens`` tokens after a context of
``--depth`` tokens (``-n``, ``-d``), ``--reps`` times, on 1 and 2 threads.

bench/export_matrix.py calls this with ``--llama-bench PATH`` to put llama.cpp beside the
exported artifacts; alone:

    python bench/llama_cpp_decode.py [CHECKPOINT] --llama-bench PATH [--specs S,XL] [--threads 1,2]
    python bench/llama_cpp_decode.py --llama-bench PATH --pte-dir DIR    # + the .pte in the C++ runner

With ``--pte-dir DIR`` (the .pte files `bench/export_matrix.py --out DIR` wrote, fp32 and int8
beside F32 and Q8_0) the same rounds also time each .pte in apps/cpp's ``matedge_runner``:
C++ against C++, no Python in either loop.

llama.cpp is not a dependency of this project: build `llama-bench` from its sources (for
example the copy inside the llama-cpp-python sdist on PyPI, vendor/llama.cpp:
``cmake -B build -DGGML_NATIVE=ON && cmake --build build --target llama-bench``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from edge.importers import gguf_file  # noqa: E402
from edge.texttable import format_table  # noqa: E402

# the project's parameter names -> llama.cpp's: the importer's tables, inverted
LAYER_NAMES = {ours: theirs for theirs, ours in gguf_file.LAYER_NAMES.items()}
TOP_NAMES = {ours: theirs for theirs, ours in gguf_file.TOP_NAMES.items()}


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's converter permutation of W_q/W_k rows (n_head * hd, d): halves -> pairs."""
    out, d_in = w.shape
    return w.reshape(n_head, 2, out // n_head // 2, d_in).swapaxes(1, 2).reshape(out, d_in)


def _gguf_name(name: str) -> str:
    if name.startswith("layers."):
        i, rest = name[len("layers."):].split(".", 1)
        return f"blk.{i}.{LAYER_NAMES[rest]}"
    return TOP_NAMES[name]


def write_gguf(dense, path: Path, qtype: str = "F32") -> Path:
    """Write a dense model (edge.model.MatFormerLM, one FFN width per layer) as a llama GGUF."""
    import gguf

    c = dense.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(c.n_layers)
    w.add_context_length(c.max_context)
    w.add_embedding_length(c.d_model)
    sizes = [layer.ffn.w_gate.weight.shape[0] for layer in dense.layers]
    w.add_feed_forward_length(sizes[0] if len(set(sizes)) == 1 else sizes)
    w.add_head_count(c.n_heads)
    w.add_head_count_kv(c.n_kv_heads)
    w.add_rope_freq_base(c.rope_base)
    w.add_layer_norm_rms_eps(c.norm_eps)
    w.add_rope_dimension_count(c.d_model // c.n_heads)
    w.add_vocab_size(c.vocab_size)
    symbols = gguf.vocab.bytes_to_unicode()  # GPT-2's byte -> printable symbol map
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    # llama.cpp requires at least one merge (and gguf-py writes no empty array): one merge of two
    # spaces into the last id, a placeholder past the bytes
    tokens = [symbols[i] if i < 256 else f"<|{i}|>" for i in range(c.vocab_size - 1)] + [symbols[32] * 2]
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t.startswith("<|") else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_merges([f"{symbols[32]} {symbols[32]}"])
    qt = gguf.GGMLQuantizationType[qtype]
    for name, p in dense.state_dict().items():
        a = p.detach().float().numpy()
        if name.endswith("attn.wq.weight"):
            a = permute(a, c.n_heads)
        elif name.endswith("attn.wk.weight"):
            a = permute(a, c.n_kv_heads)
        if qt != gguf.GGMLQuantizationType.F32 and a.ndim == 2:  # norms stay F32, as llama.cpp keeps them
            q = gguf.quants.quantize(a, qt)
            w.add_tensor(_gguf_name(name), q, raw_shape=q.shape, raw_dtype=qt)
        else:
            w.add_tensor(_gguf_name(name), np.ascontiguousarray(a, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def check_gguf(dense, path: Path) -> float:
    """Max |logit difference| between the model read back from ``path`` and ``dense``."""
    import torch

    from edge.importers.gguf_file import load_gguf

    back, _, _ = load_gguf(path)
    tokens = torch.arange(min(32, dense.config.vocab_size)).view(1, -1) % 256
    with torch.no_grad():
        return float((back(tokens) - dense(tokens)).abs().max())


def llama_bench(exe: Path, gguf_path: Path, threads: int, depth: int, tokens: int, reps: int) -> float:
    """llama-bench's decode ms/token (its tg test: ``tokens`` tokens after ``depth``)."""
    r = subprocess.run([str(exe), "-m", str(gguf_path), "-t", str(threads), "-p", "0", "-n", str(tokens),
                        "-d", str(depth), "-r", str(reps), "-o", "json"], capture_output=True, text=True,
                       timeout=600, check=True)
    [row] = [x for x in json.loads(r.stdout) if x.get("n_gen") == tokens]
    return 1000.0 / float(row["avg_ts"])


def runner_decode(runner: Path, pte: Path, threads: int, depth: int, runs: int) -> float:
    """The project's C++ runner (apps/cpp matedge_runner): median ms of forward(1 token) at
    position ``depth`` (the ExecuTorch runtime without Python, as llama-bench runs llama.cpp)."""
    r = subprocess.run([str(runner), "--model", str(pte), "--benchmark", "--methods", "prefill,decode",
                        "--prompt-tokens", str(depth), "--threads", str(threads), "--runs", str(runs),
                        "--warmup", "10"], capture_output=True, text=True, timeout=600, check=True)
    return float(json.loads(r.stdout)["methods"]["decode"]["median_ms"])


def interleaved(args, model, tmp: Path) -> list:
    """Rounds of llama-bench and the C++ runner on the .pte files of ``--pte-dir`` (named as
    ``bench/export_matrix.py --out DIR`` names them), every spec x type x threads in each round."""
    import statistics

    from edge.device.cpp_runner import ensure_cpp_runner
    from edge.slicing import slice_model
    from edge.spec import parse_spec

    runner = ensure_cpp_runner()
    pairs = {"F32": "fp32", "Q8_0": "int8", "Q4_0": "8da4w"}
    jobs = []
    for spec in args.specs.split(","):
        dense = slice_model(model, parse_spec(spec, model.config))
        for qtype in args.types.split(","):
            gg = write_gguf(dense, tmp / f"{spec}-{qtype}.gguf", qtype)
            pte = Path(args.pte_dir) / f"{spec}-executorch-{pairs[qtype]}.pte"
            jobs += [(spec, qtype, int(t), gg, pte) for t in args.threads.split(",")]
    times: dict = {}
    for r in range(args.rounds):
        for spec, qtype, t, gg, pte in jobs:
            times.setdefault((spec, qtype, t), ([], []))
            times[(spec, qtype, t)][0].append(llama_bench(args.llama_bench, gg, t, args.depth, args.tokens, 2))
            times[(spec, qtype, t)][1].append(runner_decode(runner, pte, t, args.depth, 200))
        print(f"  round {r + 1}/{args.rounds} done", flush=True)
    rows = []
    for (spec, qtype, t), (ll, et) in times.items():
        a, b = statistics.median(ll), statistics.median(et)
        rows.append([spec, f"{pairs[qtype]} / {qtype}", t, f"{b:.3f}", f"{a:.3f}", f"{a / b:.2f}x"])
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?", help="universal checkpoint (default: the demo model)")
    ap.add_argument("--llama-bench", type=Path, required=True, help="the llama-bench executable")
    ap.add_argument("--specs", default="S,XL")
    ap.add_argument("--types", default="F32,Q8_0", help="GGUF tensor types (default: F32,Q8_0; Q4_0 pairs with an 8da4w .pte)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--depth", type=int, default=16, help="context before the timed tokens (default: 16)")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--pte-dir", help="also time the .pte files of this folder (bench/export_matrix.py --out DIR) "
                    "with the C++ runner, interleaved with llama-bench")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds with --pte-dir (default: 3)")
    args = ap.parse_args(argv)
    from edge.checkpoint import load_any
    from edge.slicing import slice_model
    from edge.spec import parse_spec

    model, ckpt = load_any(Path(args.checkpoint) if args.checkpoint else None)
    rows = []
    if args.pte_dir:
        with tempfile.TemporaryDirectory() as tmp:
            rows = interleaved(args, model, Path(tmp))
        print(f"# decode ms/token, {args.tokens} tokens after {args.depth} (llama-bench) against forward(1 token) at "
              f"position {args.depth} (matedge_runner, ExecuTorch C++); medians of {args.rounds} interleaved rounds")
        print(format_table(["spec", "precision", "threads", ".pte (C++) ms", "llama.cpp ms",
                            "llama.cpp / .pte (>1: .pte faster)"], rows))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.specs.split(","):
            dense = slice_model(model, parse_spec(spec, model.config))
            for qtype in args.types.split(","):
                path = write_gguf(dense, Path(tmp) / f"{spec}-{qtype}.gguf", qtype)
                if qtype == "F32" and (diff := check_gguf(dense, path)) > 1e-4:
                    raise SystemExit(f"{path.name}: logits read back differ by {diff:.2e}: not the same model")
                for t in args.threads.split(","):
                    ms = llama_bench(args.llama_bench, path, int(t), args.depth, args.tokens, args.reps)
                    rows.append([spec, qtype, t, f"{ms:.3f}"])
                    print(f"  {spec} {qtype} {t} thread(s): {ms:.3f} ms/token", flush=True)
    print(f"# llama.cpp llama-bench on {ckpt}: {args.tokens} tokens after {args.depth}, {args.reps} reps")
    print(format_table(["spec", "type", "threads", "decode ms/token"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
