"""Shared by the build tests: a trained tiny checkpoint, a profile writer, and a check that every
manifest a build test writes matches the JSON Schema apps read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

PROFILE = """\
name = "{name}"
description = "{description}"
backend = "{backend}"
precision = "{precision}"
threads = 1
context = 64
transport = "{transport}"
{elastic}
[limits]
memory_mb = {memory_mb}
decode_ms_per_token = {decode_ms}
first_token_ms = 1000
prompt_tokens = 16

[hardware]
gemm_gflops = 20
memory_bandwidth_gbs = 5
runtime_overhead_mb = 4
"""


def _write_profile(folder: Path, name: str, backend="executorch", precision="fp32", transport="none",
                   memory_mb=50, decode_ms=1.0, description="test board", elastic=False) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(PROFILE.format(name=name, backend=backend, precision=precision, transport=transport,
                                   memory_mb=memory_mb, decode_ms=decode_ms, description=description,
                                   elastic="elastic = true\n" if elastic else ""))
    return path


@pytest.fixture
def write_profile():
    """write_profile(folder, name, **fields) -> the path of a test board's profile TOML."""
    return _write_profile


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory):
    """The tiny preset trained for 30 steps (builds only read it, so one serves every test)."""
    from edge.train import TrainArgs, train

    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    train(TrainArgs(preset="tiny", steps=30, batch_size=8, seq_len=32, eval_every=30, eval_tokens=1024,
                    progress=False, out=str(out)))
    return out


@pytest.fixture(autouse=True)
def manifests_match_their_schema(tmp_path):
    """After each test: validate every build/<device>/manifest.json written under its tmp_path."""
    yield
    import jsonschema

    from edge.plan.manifest import SCHEMA_FILE

    schema = json.loads(SCHEMA_FILE.read_text())
    for path in sorted(tmp_path.rglob("manifest.json")):
        jsonschema.validate(json.loads(path.read_text()), schema)
