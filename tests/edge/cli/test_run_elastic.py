"""`matedge run` on an elastic artifact: the member chosen per token by --member, --switch-every
or --target-ms, through the real LiteRT runtime in a subprocess; the text equals eager greedy
decoding with the same member schedule; conflicting or unknown choices are one line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PROMPT = "import os\n"
CONTEXT = 64

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def matedge(*args):
    return subprocess.run([sys.executable, "-m", "edge", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def elastic(tmp_path_factory, trained_tiny):
    """elastic.tflite (members S, XL) + elastic.json + the byte tokenizer, as a build leaves them."""
    pytest.importorskip("ai_edge_litert")
    from edge.spec import parse_spec
    from edge.tokenizer import byte_tokenizer
    from exporters.elastic_litert import export_elastic

    out = tmp_path_factory.mktemp("elastic-run")
    cfg = trained_tiny.config
    meta = export_elastic(trained_tiny, {"S": parse_spec("S", cfg), "XL": parse_spec("XL", cfg)},
                          out / "elastic.tflite", context=CONTEXT, default="XL")
    (out / "elastic.json").write_text(json.dumps(meta, default=str))
    byte_tokenizer().save(out)
    return out / "elastic.tflite"


def eager_text(model, schedule, n: int) -> str:
    """Greedy text of the eager model whose step i (0 = the prompt) runs schedule(i)'s spec."""
    from edge.device.elastic import greedy
    from edge.tokenizer import byte_tokenizer
    from exporters.elastic import EagerElastic

    eager = EagerElastic(model, {m: (m,) * model.config.n_layers for m in ("S", "XL")}, CONTEXT)
    tok = byte_tokenizer()
    ids = greedy(eager, tok.encode(PROMPT), n, schedule)
    if tok.eos_ids[0] in ids:
        ids = ids[:ids.index(tok.eos_ids[0])]
    return tok.decode(ids)


def test_switch_every_streams_the_eager_schedule(elastic, trained_tiny):
    from edge.device.elastic import every

    r = matedge("run", elastic, "--prompt", PROMPT, "--max-new-tokens", 20, "--switch-every", 4, "--members", "S,XL")
    assert r.returncode == 0, r.stderr
    assert r.stdout[:-1] == eager_text(trained_tiny, every(4, ["S", "XL"]), 20)
    [line] = r.stderr.strip().splitlines()  # one line of figures, no runtime chatter
    assert "switching every 4 tokens" in line and "members S:" in line and "XL:" in line


def test_one_member_and_the_controller(elastic, trained_tiny):
    r = matedge("run", elastic, "--prompt", PROMPT, "--max-new-tokens", 16, "--member", "S")
    assert r.returncode == 0, r.stderr
    assert r.stdout[:-1] == eager_text(trained_tiny, "S", 16)
    n = int(r.stderr.split(": ")[1].split(" tokens")[0])
    assert n == len(r.stdout) - 1 and r.stderr.strip().endswith(f"members S:{n}")  # byte tokens: one char each
    # A target no decode step can meet: the controller steps down to the cheapest member and stays.
    r = matedge("run", elastic, "--prompt", PROMPT, "--max-new-tokens", 30, "--target-ms", 1e-6)
    assert r.returncode == 0, r.stderr
    mix = r.stderr.strip().rsplit("members ", 1)[1].split()
    assert mix[0].startswith("XL:") and mix[-1].startswith("S:") and int(mix[-1][2:]) > int(mix[0][3:])


@pytest.mark.parametrize("args, expected", [
    (["--member", "Q"], "no member 'Q' in this artifact (has: S, XL)"),
    (["--member", "S", "--target-ms", "3"], "--member and --target-ms conflict"),
    (["--members", "S"], "--members goes with --switch-every"),
    (["--target-ms", "0"], "out of range"),
])
def test_bad_choices_are_one_line(elastic, args, expected):
    r = matedge("run", elastic, "--prompt", "x", *args)
    assert r.returncode == 2 and expected in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_elastic_options_need_an_elastic_file(tmp_path):
    f = tmp_path / "model.litertlm"
    f.write_bytes(b"x")
    r = matedge("run", f, "--prompt", "x", "--member", "S")
    assert r.returncode == 2 and "elastic artifact (elastic.pte or elastic.tflite" in r.stderr
