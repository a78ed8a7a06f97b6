"""Speculative decoding in the native app: the ExecuTorch C++ runtime, no Python in the loop.

For a universal checkpoint (default: runs/default, the model `matedge train` trains), build the host profile with
estimated costs and an elastic artifact of members S and XL (what `matedge build --device host
--no-measure --elastic --members S,XL` does), bundle it for the native app (`matedge bundle
--app native`), and time `matedge_chat --member XL` against `--member XL --speculative K` for
K = 1..4 (S drafts K tokens, XL verifies them in one call over the one KV cache), in interleaved
rounds over three held-out prompts. Every speculative run must give XL's tokens exactly.
The figure is the app's decode ms/token (time after the first token over the tokens after it),
on one XNNPACK thread (`--threads 1`: steadier on a shared machine).

    python bench/elastic_native.py [CHECKPOINT] [--rounds 3] [--tokens 96]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from edge.texttable import format_table  # noqa: E402

KS = (1, 2, 3, 4)


def build_bundle(ckpt: Path, work: Path) -> Path:
    """The host profile's build with an elastic S/XL file, bundled for the native app."""
    from edge.bundle.make import make_bundle
    from edge.device.profiles import load_profile
    from edge.plan.build import BuildSettings, build_all
    from edge.plan.planner import SearchSettings
    from exporters.logs import quiet_output

    host = load_profile("host")  # loose latency limits: the planner may choose XL, the verifier
    limits = dataclasses.replace(host.limits, decode_ms_per_token=100.0, first_token_ms=1000.0)
    profile = dataclasses.replace(host, transport="none", elastic=True, limits=limits)
    settings = BuildSettings(checkpoint=ckpt, out_root=work / "build", measure=False, progress=False,
                             search=SearchSettings(generations=1, population=8), frontier_members=0,
                             elastic_members=("S", "XL"))
    with quiet_output(work / "build.log"):
        [res] = build_all([profile], settings, log=lambda *_: None)
    if not res.ok:
        raise SystemExit(f"the build failed: {res.error} (log: {work / 'build.log'})")
    bundle = work / "bundle"
    make_bundle(["host"], "native", bundle, work / "build", log=lambda *_: None)
    return bundle


def chat(app: Path, bundle: Path, prompt: str, n: int, k: int | None) -> dict:
    """One run of the app: its JSON report."""
    args = [str(app), str(bundle), "--prompt", prompt, "--max-new-tokens", str(n), "--member", "XL", "--json",
            "--threads", "1"]
    r = subprocess.run(args + (["--speculative", str(k)] if k else []), capture_output=True, text=True,
                       timeout=600, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?", help="universal checkpoint (default: the demo model)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default: 3)")
    ap.add_argument("--tokens", type=int, default=96, help="new tokens per prompt (default: 96)")
    ap.add_argument("--work", type=Path, help="keep the build and bundle in this new folder (default: a temporary one)")
    args = ap.parse_args(argv)
    from edge.checkpoint import default_checkpoint
    from edge.data import load_corpus
    from edge.tokenizer import load_tokenizer
    from web_app import build_native_app

    ckpt = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    tok = load_tokenizer(ckpt)
    val = load_corpus().val
    prompts = [tok.decode(val[i * 1024:i * 1024 + 16].tolist()) for i in range(3)]
    app = build_native_app()
    print(f"# Speculative decoding in the native app (ExecuTorch C++ runtime): {ckpt}, "
          f"{args.tokens} tokens after each of {len(prompts)} prompts, {args.rounds} rounds")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        bundle = work / "bundle"
        if not bundle.exists():
            print("(building the host profile with an elastic S/XL artifact and bundling it; a few minutes)")
            bundle = build_bundle(ckpt, work)
        ms = {k: [] for k in (None, *KS)}  # per round: summed ms over the prompts' decoded tokens
        kept = {k: [0, 0, 0] for k in KS}  # accepted, drafted, verify calls (all rounds)
        for r in range(args.rounds):
            want = [chat(app, bundle, p, args.tokens, None) for p in prompts]
            ms[None].append(sum(w["decode_ms_per_token"] * (len(w["tokens"]) - 1) for w in want))
            for k in KS:
                runs = [chat(app, bundle, p, args.tokens, k) for p in prompts]
                for run, w in zip(runs, want):
                    assert run["tokens"] == w["tokens"], f"k={k}: speculative tokens differ from XL's"
                    s = run["speculative"]
                    kept[k] = [kept[k][0] + s["accepted"], kept[k][1] + s["drafted"], kept[k][2] + s["rounds"]]
                ms[k].append(sum(x["decode_ms_per_token"] * (len(x["tokens"]) - 1) for x in runs))
            print(f"  round {r + 1}/{args.rounds}: XL {ms[None][-1]:.1f} ms, "
                  + ", ".join(f"k={k} {ms[k][-1]:.1f} ms" for k in KS), flush=True)
    tokens = sum(len(w["tokens"]) - 1 for w in want)
    base = statistics.median(ms[None])
    rows = [["XL alone", "-", "-", f"{base / tokens:.3f}", round(1000 * tokens / base, 1), "1.00x"]]
    for k in KS:
        t = statistics.median(ms[k])
        acc, drafted, calls = kept[k]
        rows.append([f"k={k}", f"{100 * acc / max(1, drafted):.0f}%", f"{acc / max(1, calls):.2f}",
                     f"{t / tokens:.3f}", round(1000 * tokens / t, 1), f"{base / t:.2f}x"])
    for p, w in zip(prompts, want):
        print(f"   {p!r} -> {w['text'][:60]!r}")
    print(format_table(["run", "acceptance", "kept/call", "ms/token", "tokens/s", "speed-up"], rows))
    print("Tokens identical to XL's in every run (paper: 1.14-1.16x).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
