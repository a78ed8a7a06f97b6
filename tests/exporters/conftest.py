"""Fixtures for the exporter tests: one torch thread, the validation stream, the mixed spec."""

from __future__ import annotations

import copy

import pytest
import torch

MIXED_SPEC = "S,M,L,XL"  # one granularity per layer of the `tiny` preset


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Eager references on one thread: on a shared, oversubscribed CPU, 2-thread torch ops can
    stall for tens of ms each waiting for a descheduled worker. Restored after each module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def val_stream(corpus) -> torch.Tensor:
    return corpus.val


@pytest.fixture(scope="session")
def mixed_exports(trained_tiny, val_stream, tmp_path_factory):
    """(backend, precision) -> Artifact of the trained tiny model at ``MIXED_SPEC`` (context 64,
    project parity on), exported into ``mixed_exports.folder`` on first use and shared by every
    test of the session that asks: test_matrix and test_llm_runner read the same files, and
    `make test` keeps them on one worker (test_groups in pyproject.toml), so each is made once."""
    from exporters import export_model

    folder = tmp_path_factory.mktemp("mixed-exports")
    cache: dict = {}

    def get(backend: str, precision: str):
        if (backend, precision) not in cache:
            cache[(backend, precision)] = export_model(trained_tiny, backend, precision, folder, spec=MIXED_SPEC,
                                                       name=f"{backend}-{precision}", val_stream=val_stream)
        return cache[(backend, precision)]

    get.folder = folder
    return get


def with_outliers(model):
    """The same function (every factor a power of two) with activation channels 256x larger than
    the rest: a norm channel feeding gate/up and one FFN hidden unit per layer, as trained LLMs
    have (SmolLM2's largest unit is ~1,000x a typical one)."""
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        for block in model.layers:
            block.ffn_norm.weight[3] *= 256
            block.ffn.w_gate.weight[:, 3] /= 256
            block.ffn.w_up.weight[:, 3] /= 256
            block.ffn.w_up.weight[5] *= 256  # hidden unit 5 (in every granularity)
            block.ffn.w_down.weight[:, 5] /= 256
    return model
