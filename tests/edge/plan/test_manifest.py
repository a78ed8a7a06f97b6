"""The manifest's JSON Schema: itself valid, and strict enough to catch a malformed manifest."""

from __future__ import annotations

import json

import jsonschema
import pytest

from edge.plan.manifest import MANIFEST_SCHEMA, SCHEMA_FILE, SCHEMA_VERSION, Manifest


def _example() -> dict:
    art = {"file": "model.pte", "metadata": "model.json", "spec": "S,M,L,XL", "cache_key": "ab12", "bytes": 10,
           "sha256": "0" * 64, "parity": {"passed": True}}
    costs = {"decode_ms_per_token": 1.0, "first_token_ms": 9.0, "memory_mb": 30.0}
    return Manifest(device="board", description="a board", backend="executorch", precision="fp32", threads=1,
                    context=64, prompt_tokens=16, limits=costs, estimated=True, cost_table="estimated (transport none)",
                    spec="S,M,L,XL", params=1000, val_loss=2.5, predicted=dict(costs), source="evolution",
                    consistency_with_xl={"agreement_pct": 90.0, "kl": 0.1}, best_uniform=None, fallback=None,
                    measured=None, measured_within_limits=None, artifacts={"model": art},
                    tokenizer={"type": "bytes", "vocab_size": 260, "specials": {"<pad>": 256}},
                    provenance={"checkpoint": "runs/x", "checkpoint_sha256": "1" * 64, "date": "2026-11-27",
                                "eval_tokens": 1024, "seq_len": 32, "candidates_scored": 3, "libraries": {}}).to_dict()


def test_schema_is_valid_and_names_this_version():
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema"]["const"] == MANIFEST_SCHEMA
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION


def test_record_serialises_to_a_valid_manifest_with_its_version_first():
    d = _example()
    assert list(d)[:3] == ["schema", "schema_version", "device"] and d["schema_version"] == SCHEMA_VERSION
    jsonschema.validate(d, json.loads(SCHEMA_FILE.read_text()))


@pytest.mark.parametrize("edit", [lambda d: d.pop("schema_version"), lambda d: d.update(threads=0),
                                  lambda d: d["artifacts"].pop("model"), lambda d: d.update(extra=1),
                                  lambda d: d["predicted"].pop("memory_mb")])
def test_schema_rejects_a_malformed_manifest(edit):
    d = _example()
    edit(d)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(d, json.loads(SCHEMA_FILE.read_text()))
