"""The web app end to end in headless Chromium (Debian's chromium, driven by playwright-core).

A real bundle of a tiny model's LiteRT build is served over http://127.0.0.1; the page verifies
every file's sha256, benchmarks, chooses a variant with the bundle's rule, and generates. Its
tokens must equal eager PyTorch's greedy tokens for the same spec; a tampered file must be
refused with a visible message. The screenshot the README shows is taken here.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from urllib.parse import quote

import pytest

from edge.cli import main

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "apps" / "web"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PROMPT = "def main("
SCREENSHOT = WEB / "screenshot.png"  # rewritten by a run with MATEDGE_UPDATE_SCREENSHOT=1

pytestmark = [
    pytest.mark.integration, pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists() or not (WEB / "node_modules" / "playwright-core").exists(),
                       reason="needs Debian's chromium and `npm ci` in apps/web (.ci/run installs both)"),
]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output readable
        pass


@pytest.fixture(scope="module")
def site(tiny_builds, tmp_path_factory):
    """An http://127.0.0.1 server whose root holds apps/web (the page) and bundles/ (a web bundle)."""
    _, build = tiny_builds
    root = tmp_path_factory.mktemp("site")
    (root / "apps").mkdir()
    (root / "apps" / "web").symlink_to(WEB)
    assert main(["bundle", "--build-dir", str(build), "--device", "webdev", "--app", "web",
                 "--out", str(root / "bundles" / "web")]) == 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def drive(url: str, screenshot: Path | None = None) -> dict:
    args = ["node", str(WEB / "e2e" / "drive.mjs"), url] + ([str(screenshot)] if screenshot else [])
    r = subprocess.run(args, capture_output=True, text=True, timeout=300, env={"CHROMIUM": CHROMIUM, "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def eager_tokens(ckpt: Path, spec: str, prompt_ids: list[int], n: int) -> list[int]:
    from edge.checkpoint import load_model
    from edge.generate import greedy_generate
    from edge.spec import parse_spec

    model = load_model(ckpt)
    return greedy_generate(model, prompt_ids, n, parse_spec(spec, model.config))


def test_page_generates_eager_tokens_with_the_chosen_variant(tiny_builds, site, tmp_path):
    ckpt, _ = tiny_builds
    root, base = site
    shot = tmp_path / "page.png"
    report = drive(f"{base}/apps/web/?accelerator=wasm&autorun=1&prompt={quote(PROMPT)}", shot)
    assert report["state"] == "done", report.get("error")
    manifest = json.loads((root / "bundles" / "web" / "manifest.json").read_text())
    variant = next(v for v in manifest["variants"] if v["name"] == report["variant"])
    from edge.tokenizer import load_tokenizer

    ids = load_tokenizer(root / "bundles" / "web").encode(PROMPT)
    assert report["promptIds"] == ids  # @huggingface/tokenizers encodes as the Python tokenizer does
    # the page decodes to the end of the context; eager's cache holds prompt + new tokens
    n = min(len(report["tokens"]), variant["context"] - len(ids))
    want = eager_tokens(ckpt, variant["spec"], ids, n)
    assert report["tokens"][:n] == want and n >= 16
    assert report["reason"].startswith(variant["name"]) and report["firstTokenMs"] > 0
    assert shot.read_bytes()[:4] == b"\x89PNG"
    if os.environ.get("MATEDGE_UPDATE_SCREENSHOT"):
        SCREENSHOT.write_bytes(shot.read_bytes())  # the picture the README shows


def test_tampered_file_is_refused_visibly(site, tmp_path):
    root, base = site
    bad = root / "bundles" / "tampered"
    shutil.copytree(root / "bundles" / "web", bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    target = bad / manifest["variants"][0]["file"]
    data = bytearray(target.read_bytes())
    data[len(data) // 3] ^= 0x01  # one bit
    target.write_bytes(bytes(data))
    report = drive(f"{base}/apps/web/?accelerator=wasm&autorun=1&bundle=../../bundles/tampered/")
    assert report["state"] == "error" and report["errorVisible"]
    assert f"refused {target.name}" in report["errorText"] and "sha256" in report["errorText"]


def elastic_tokens(ckpt: Path, prompt_ids: list[int], used: list[str], context: int) -> list[int]:
    """Eager greedy tokens of the elastic graph when token i is made by member used[i] (token 0
    by the prompt's prefill), over one shared cache: what the page must have produced."""
    from edge.checkpoint import load_model
    from edge.device.elastic import greedy
    from exporters.elastic import EagerElastic

    model = load_model(ckpt)
    eager = EagerElastic(model, {m: (m,) * model.config.n_layers for m in ("S", "XL")}, context)
    return greedy(eager, prompt_ids, len(used), lambda step: used[step])


@pytest.mark.parametrize("member, target", [("S", None), ("auto", 1e-6)])
def test_page_runs_the_elastic_file_and_switches_members(elastic_builds, tmp_path, member, target):
    """With an elastic file in the bundle the page runs it: a pinned member for every token, or the
    controller, which under an unreachable target steps from XL down to S while generating. The
    tokens equal eager's with the member schedule the page reports (K/V shared across members)."""
    ckpt, build, _ = elastic_builds
    root = tmp_path / "site"
    (root / "apps").mkdir(parents=True)
    (root / "apps" / "web").symlink_to(WEB)
    assert main(["bundle", "--build-dir", str(build), "--device", "webdev", "--app", "web",
                 "--out", str(root / "bundles" / "web")]) == 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = (f"http://127.0.0.1:{server.server_address[1]}/apps/web/?accelerator=wasm&autorun=1"
               f"&prompt={quote(PROMPT)}&member={member}" + (f"&target={target}" if target else ""))
        report = drive(url)
    finally:
        server.shutdown()
    assert report["state"] == "done", report.get("error")
    assert report["elastic"] == "webdev.elastic" and report["members"] == ["S", "XL"]
    used = report["membersUsed"]
    assert len(used) == len(report["tokens"]) >= 16
    if member == "S":
        assert set(used) == {"S"}
    else:  # starts at the largest, steps down once the median of 3 decode times misses the target
        assert used[0] == "XL" and used[-1] == "S" and "XL" in used[1:4], used
    n = len(used)
    assert report["tokens"] == elastic_tokens(ckpt, report["promptIds"], used, 64)[:n]
