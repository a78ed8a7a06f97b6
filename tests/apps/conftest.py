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
