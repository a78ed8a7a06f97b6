"""Bundle sizes, and the web app's load time, time to first token and decode speed in headless
Chromium (LiteRT.js, wasm), next to the native ExecuTorch runtime (apps/cpp matedge_runner) on
the same spec.

    python bench/web_app.py --web bundles/web --native bundles/native [--rounds 3] [--prompt "def main("]

Needs Debian's chromium and `npm ci` in apps/web. Rounds are interleaved (page, native, page,
...) so both see the same load on a shared machine. Prints a table; figures are medians.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.texttable import format_table  # noqa: E402


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(web_bundle: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A 127.0.0.1 server whose root holds apps/web and bundles/web (symlinks)."""
    root = Path(tempfile.mkdtemp(prefix="matedge-web-"))
    (root / "apps").mkdir()
    (root / "apps" / "web").symlink_to(ROOT / "apps" / "web")
    (root / "bundles").mkdir()
    (root / "bundles" / "web").symlink_to(web_bundle.resolve())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def page_round(base: str, prompt: str, variant: str | None) -> dict:
    url = f"{base}/apps/web/?accelerator=wasm&autorun=1&prompt={quote(prompt)}"
    if variant:
        url += f"&variant={quote(variant)}"
    r = subprocess.run(["node", str(ROOT / "apps/web/e2e/drive.mjs"), url], capture_output=True, text=True,
                       timeout=600, check=True)
    return json.loads(r.stdout)


def native_round(runner: Path, pte: Path, context: int, prompt: str, n: int) -> dict:
    r = subprocess.run([str(runner), "--model", str(pte), "--generate", prompt, "--context", str(context),
                        "--max-new-tokens", str(n), "--json", "--threads", "1"], capture_output=True, text=True,
                       timeout=600, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--web", type=Path, required=True, help="a web bundle (matedge bundle --app web)")
    p.add_argument("--native", type=Path, help="a native bundle with the same spec (matedge bundle --app native)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--prompt", default="def main(")
    p.add_argument("--variant", help="make the page run this variant (default: the one its rule chooses)")
    args = p.parse_args(argv)

    rows = []
    for b in [args.web] + ([args.native] if args.native else []):
        m = json.loads((b / "manifest.json").read_text())
        for name, f in m["files"].items():
            rows.append([str(b), name, f"{f['bytes'] / 2**20:.3f}"])
        rows.append([str(b), "(total)", f"{sum(f['bytes'] for f in m['files'].values()) / 2**20:.3f}"])
    print(format_table(["bundle", "file", "MiB"], rows))

    server, base = serve(args.web)
    runner = native = None
    if args.native:
        from edge.device.cpp_runner import ensure_cpp_runner

        runner = ensure_cpp_runner()
        native = json.loads((args.native / "manifest.json").read_text())
    web, nat = [], []
    try:
        for _ in range(args.rounds):
            page = page_round(base, args.prompt, args.variant)
            web.append(page)
            if native:
                same = [v for v in native["variants"] if v["spec"] == page["spec"]]
                if same:
                    nat.append(native_round(runner, args.native / same[0]["file"], same[0]["context"], args.prompt,
                                            len(page["tokens"])))
    finally:
        server.shutdown()
    med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
    print(f"\nchosen in Chromium: {web[0]['variant']} (spec {web[0]['spec']}); {web[0]['reason']}")
    table = [["Chromium, LiteRT.js wasm", web[0]["spec"], f"{med([w['loadMs'] for w in web]):.0f}",
              f"{med([w['firstTokenMs'] for w in web]):.2f}", f"{med([w['decodeMsPerToken'] for w in web]):.3f}",
              len(web[0]["tokens"])]]
    if nat:
        table.append(["native, ExecuTorch C++ (matedge_runner)", web[0]["spec"], "-",
                      f"{med([n['prefill_ms'] for n in nat]):.2f}", f"{med([n['decode_ms_per_token'] for n in nat]):.3f}",
                      len(nat[0]["tokens"])])
        print(f"same tokens as the page: {nat[0]['tokens'] == web[0]['tokens']}")
    print(format_table(["runtime", "spec", "load ms", "first token ms", "decode ms/token", "tokens"], table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
