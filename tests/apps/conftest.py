"""Real builds of a tiny trained model, shared by the bundle and app tests.

Two device profiles are written on the fly: ``webdev`` (LiteRT fp32, what the web app runs) and
``nativedev`` (ExecuTorch fp32, what the native app runs). Both are built by the real pipeline
(plan, slice, export, parity) with estimated costs (transport none). The web device's memory
limit is tight enough that its build ships a fallback beside the chosen spec, so the page has
two variants to choose from; the native device's is not (one export less: each takes minutes
on a busy 2-core machine).
"""

from __future__ import annotations

import pytest

DEVICES = {"webdev": ("web", "litert", 5.2), "nativedev": ("native", "executorch", 50.0)}


@pytest.fixture(scope="session")
def tiny_builds(tmp_path_factory, write_profile):
    """(checkpoint folder, build root) with builds/webdev and builds/nativedev."""
    from edge.plan.build import BuildSettings, build_all
    from edge.device.profiles import load_profile
    from edge.plan.planner import SearchSettings
    from edge.train import TrainArgs, train

    root = tmp_path_factory.mktemp("apps")
    ckpt = root / "ckpt"
    train(TrainArgs(preset="tiny", steps=150, batch_size=8, seq_len=32, eval_every=150, eval_tokens=1024,
                    progress=False, out=str(ckpt)))
    profiles = [load_profile(write_profile(root, name, backend=backend, memory_mb=memory_mb, decode_ms=5.0,
                                           description=f"test device for the {app} app"))
                for name, (app, backend, memory_mb) in DEVICES.items()]
    settings = BuildSettings(checkpoint=ckpt, out_root=root / "build", eval_tokens=1024, seq_len=32,
                             search=SearchSettings(generations=2, population=6), measure=False, progress=False)
    results = build_all(profiles, settings, log=lambda *_: None)
    assert all(r.ok for r in results), [r.error for r in results]
    return ckpt, root / "build"


@pytest.fixture(scope="session")
def elastic_builds(tiny_builds, tmp_path_factory, write_profile):
    """(checkpoint, build root, {device: elastic manifest entry}): a copy of tiny_builds whose
    builds also hold an elastic file with members S and XL (default XL): elastic.tflite for
    webdev, elastic.pte for nativedev, written by the build's own step
    (edge.plan.elastic.build_elastic, parity per member) and recorded as `build --elastic` does."""
    import json
    import shutil

    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("executorch.runtime")
    from edge.checkpoint import load_any
    from edge.data import load_corpus
    from edge.device.profiles import load_profile
    from edge.plan.elastic import build_elastic
    from edge.spec import parse_spec

    ckpt, build = tiny_builds
    base = tmp_path_factory.mktemp("elastic-builds")
    root = base / "build"
    shutil.copytree(build, root)
    model, _ = load_any(ckpt)
    cfg = model.config
    val = load_corpus(max_bytes=400_000).val
    entries = {}
    for device, (_, backend, memory_mb) in DEVICES.items():
        profile = load_profile(write_profile(base, device, backend=backend, memory_mb=memory_mb, decode_ms=5.0))
        folder = root / device
        entries[device] = build_elastic(model, profile, {"S": parse_spec("S", cfg), "XL": parse_spec("XL", cfg)},
                                        "XL", folder, val)
        m = json.loads((folder / "manifest.json").read_text())
        m["artifacts"]["elastic"] = entries[device]
        (folder / "manifest.json").write_text(json.dumps(m))
    return ckpt, root, entries
