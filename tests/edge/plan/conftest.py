"""Every manifest a build test writes is checked against the JSON Schema apps read."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(autouse=True)
def manifests_match_their_schema(tmp_path):
    """After each test: validate every build/<device>/manifest.json written under its tmp_path."""
    yield
    import jsonschema

    from edge.plan.manifest import SCHEMA_FILE

    schema = json.loads(SCHEMA_FILE.read_text())
    for path in sorted(tmp_path.rglob("manifest.json")):
        jsonschema.validate(json.loads(path.read_text()), schema)
