"""The runners that measure on a device: the native ExecuTorch runner (apps/cpp, built with CMake
against the executorch wheel) and the LiteRT script. Neither imports torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from edge.device.profiles import load_profile
from edge.device.transports import LocalTransport

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TINY_EXECUTORCH = """\
import sys, torch
from torch import nn
from executorch.exir import to_edge_transform_and_lower
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

class Tiny(nn.Module):  # prefill(tokens[1, T]) / decode(token[1, 1]), a mutable cache buffer
    def __init__(self):
        super().__init__()
        self.emb, self.lin = nn.Embedding(16, 8), nn.Linear(8, 16)
        self.register_buffer("cache", torch.zeros(1, 4, 8))
    def forward(self, tokens, pos):
        x = self.emb(tokens)
        self.cache.add_(x.mean(1, keepdim=True))
        return self.lin(x + self.cache.mean(1, keepdim=True))

m = Tiny().eval().requires_grad_(False)
pos = torch.zeros(1, dtype=torch.long)
eps = {"prefill": torch.export.export(m, (torch.zeros(1, 4, dtype=torch.long), pos)),
       "decode": torch.export.export(m, (torch.zeros(1, 1, dtype=torch.long), pos))}
open(sys.argv[1], "wb").write(to_edge_transform_and_lower(eps, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)
"""

TINY_LITERT = """\
import sys, torch, litert_torch
from torch import nn
class Tiny(nn.Module):  # the cache passes in and out, as LiteRT needs
    def __init__(self):
        super().__init__(); self.emb = nn.Embedding(16, 8); self.lin = nn.Linear(8, 16)
    def forward(self, tokens, cache):
        x = self.emb(tokens); return self.lin(x + cache.mean(1, keepdim=True)), cache + 1
m, c = Tiny().eval(), torch.zeros(1, 4, 8)
(litert_torch.signature("prefill", m, (torch.zeros(1, 4, dtype=torch.long), c))
 .signature("decode", m, (torch.zeros(1, 1, dtype=torch.long), c)).convert().export(sys.argv[1]))
"""

TINY_LITERT_LM = """\
import sys, torch, litert_torch
from torch import nn
class Tiny(nn.Module):  # LiteRT-LM's names: tokens, input_pos, mask, kv_cache_k_0 in and out
    def __init__(self):
        super().__init__(); self.emb = nn.Embedding(16, 8); self.lin = nn.Linear(8, 16)
    def forward(self, tokens, input_pos, mask, kv_cache):
        x = self.emb(tokens) + mask.sum() + input_pos.float().sum()
        return {"logits": self.lin(x), "kv_cache_k_0": kv_cache["k_0"] + x.mean()}
m = Tiny().eval()
def kw(T):
    return {"tokens": torch.zeros(1, T, dtype=torch.int32), "input_pos": torch.arange(T, dtype=torch.int32),
            "mask": torch.zeros(1, 1, T, 8), "kv_cache": {"k_0": torch.zeros(1, 1, 8, 4)}}
(litert_torch.signature("prefill_4", m, sample_kwargs=kw(4)).signature("decode", m, sample_kwargs=kw(1))
 .convert().export(sys.argv[1]))
"""


def _export(tmp_path, source, name):
    script = tmp_path / f"make_{name}.py"
    script.write_text(source)
    out = tmp_path / name
    r = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def runner():
    if shutil.which("cmake") is None:
        pytest.skip("cmake not installed (.ci/run installs it)")
    from edge.device.cpp_runner import ensure_cpp_runner

    return ensure_cpp_runner()


def test_cpp_runner_benchmarks_any_program_from_its_metadata(runner, tmp_path):
    from edge.device.runners import measure_artifact

    pte = _export(tmp_path, TINY_EXECUTORCH, "tiny.pte")
    r = subprocess.run([str(runner), "--model", str(pte), "--benchmark", "--runs", "5", "--warmup", "1",
                        "--threads", "1", "--no-verify"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out["methods"]) == {"prefill", "decode"}
    for m in out["methods"].values():
        assert m["runs"] == 5 and 0 < m["median_ms"] <= m["p90_ms"] and m["arena_bytes"] > 0
    # No Python in the runner: its own peak RSS is a few MB, far below torch's ~355 MB.
    assert 0 < out["peak_rss_bytes"] < 60 * 2**20
    meas = measure_artifact(LocalTransport(), load_profile("host"), pte, runs=3, warmup=1)
    assert meas["decode_ms"] > 0 and meas["artifact_bytes"] == pte.stat().st_size
    assert 0 < meas["peak_rss_bytes"] < 60 * 2**20


def test_llm_ops_library_is_left_out_of_the_measured_memory(runner, tmp_path, tiny_config):
    """A program with ExecuTorch's LLM custom ops (the default export) makes the runner load the
    wheel's kernels library, which drags libtorch in; the measurement leaves that out, as a
    device runtime linking the kernels would not carry it."""
    import dataclasses

    import exporters
    from edge.device.runners import measure_artifact
    from edge.model import MatFormerLM

    model = MatFormerLM(dataclasses.replace(tiny_config, max_context=128)).eval()  # room for the 64-token prompt
    art = exporters.export_model(model, "executorch", "fp32", tmp_path, spec="S", parity=False)
    assert art.meta["ops"] == "llama"
    profile = load_profile("host")
    meas = measure_artifact(LocalTransport(), profile, art.path, runs=3, warmup=1)
    assert meas["decode_ms"] > 0 and meas["llm_ops_bytes"] > 30 * 2**20  # libtorch's share, loaded
    assert 0 < meas["peak_rss_bytes"] < 60 * 2**20  # the runner and the model, as with plain ops


def test_cpp_runner_crash_is_reported_with_its_stderr(runner, tmp_path):
    from edge.device.runners import measure_artifact, ProfilerError

    bad = tmp_path / "corrupt.pte"
    bad.write_bytes(b"not a program" * 100)
    with pytest.raises(ProfilerError, match="runner failed on corrupt.pte .*cannot load program"):
        measure_artifact(LocalTransport(), load_profile("host"), bad, runs=1, warmup=0)


def test_cpp_runner_build_is_cached(runner):
    from edge.device.cpp_runner import ensure_cpp_runner

    before = runner.stat().st_mtime
    assert ensure_cpp_runner() == runner and runner.stat().st_mtime == before


def test_litert_runner_times_every_signature_without_torch(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from edge.device.runners import LITERT_RUNNER

    tfl = _export(tmp_path, TINY_LITERT, "tiny.tflite")
    probe = ("import runpy, sys\nsys.argv = sys.argv[1:]\ntry:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
             "except SystemExit:\n    pass\nprint('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    r = subprocess.run([sys.executable, "-c", probe, str(LITERT_RUNNER), "--model", str(tfl), "--runs", "3",
                        "--no-verify"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    out = json.loads(lines[0])
    assert lines[-1] == "NO-TORCH" and set(out["methods"]) == {"prefill", "decode"}
    assert out["methods"]["decode"]["median_ms"] > 0 and out["peak_rss_bytes"] < 200 * 2**20


def test_litert_runner_takes_litert_lm_signatures(tmp_path):
    """`--methods prefill,decode` on LiteRT-LM's convention: prefill is the prefill_<T> signature,
    input_pos and mask follow the prompt (positions 0..T-1, decode at T)."""
    pytest.importorskip("ai_edge_litert")
    from edge.device.runner_litert import _inputs
    from edge.device.runners import LITERT_RUNNER

    tfl = _export(tmp_path, TINY_LITERT_LM, "tiny_lm.tflite")
    r = subprocess.run([sys.executable, str(LITERT_RUNNER), "--model", str(tfl), "--methods", "prefill,decode",
                        "--runs", "3", "--no-verify"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    methods = json.loads(r.stdout.strip().splitlines()[-1])["methods"]
    assert {k: v["signature"] for k, v in methods.items()} == {"prefill": "prefill_4", "decode": "decode"}
    details = {"input_pos": {"shape": [1], "dtype": "int32"}, "mask": {"shape": [1, 1, 1, 8], "dtype": "float32"}}
    inputs = _inputs(details, decode_pos=4)
    assert inputs["input_pos"].tolist() == [4] and (inputs["mask"][0, 0, 0] == 0).tolist() == [True] * 5 + [False] * 3


def test_litert_runner_times_the_decode_window_a_generating_runner_uses():
    """`--methods decode` on a file with attention windows times decode_w<N> holding the position
    after the prompt, as exporters.litert.LiteRTRunner decodes there; past every window, decode."""
    from edge.device.runner_litert import _resolve

    sigs = {"prefill_64": {}, "decode": {}, "decode_w256": {}, "decode_w512": {}, "decode_w1024": {}}
    assert _resolve("decode", sigs, 64) == "decode_w256"
    assert _resolve("decode", sigs, 256) == "decode_w512"
    assert _resolve("decode", sigs, 1024) == "decode"
    assert _resolve("decode", {"decode": {}}, 64) == "decode" and _resolve("prefill", sigs) == "prefill_64"
    # an elastic file: decode_<m> among its own windows; a window named outright is itself
    el = {"prefill_S": {}, "decode_S": {}, "decode_S_w32": {}, "decode_XL": {}, "decode_XL_w32": {}}
    assert _resolve("decode_S", el, 8) == "decode_S_w32" and _resolve("decode_XL", el, 8) == "decode_XL_w32"
    assert _resolve("decode_S", el, 32) == "decode_S" and _resolve("decode_w256", sigs, 8) == "decode_w256"
