"""A stored cost table is stale when this project's runner measured it under another export or
runner method (the backend record's ``cost_method``): LiteRT's decode windows and in-place
caches, ExecuTorch's LLM custom ops, changed what every figure means."""

from __future__ import annotations

import dataclasses

import pytest

from edge.config import MatFormerConfig
from edge.device.profiler import table_header
from edge.device.profiles import load_profile
from edge.device.runners import RUNNER_LABELS
from edge.device.table_source import table_is_stale
from exporters.backends import get_backend


@pytest.mark.parametrize("backend", ["executorch", "litert"])
def test_a_table_measured_another_way_is_stale(backend):
    host = load_profile("host")
    profile = dataclasses.replace(host, backend=backend, precision="fp32")
    config = MatFormerConfig.from_preset("tiny")
    table = dict(table_header(profile, config, estimated=False))
    ours = RUNNER_LABELS[get_backend(backend).runner]
    table["provenance"] = {"runner": ours, "method": get_backend(backend).cost_method}
    assert table_is_stale(table, profile, config) == ""
    del table["provenance"]["method"]  # measured before the method was recorded
    assert f"earlier {backend} export or runner (unrecorded" in table_is_stale(table, profile, config)
    table["provenance"]["method"] = "something older"
    assert "something older" in table_is_stale(table, profile, config)
    # an imported table (another runner: a sample app) and an estimate are not judged by method
    assert table_is_stale({**table, "provenance": {"runner": "the iOS sample app"}}, profile, config) == ""
    assert table_is_stale({**table, "estimated": True}, profile, config) == ""
