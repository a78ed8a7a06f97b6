"""Shared by the build tests: a trained tiny checkpoint and a check that every manifest a build
test writes matches the JSON Schema apps read (the profile writer is in tests/conftest.py)."""

from __future__ import annotations

import json

import pytest


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
