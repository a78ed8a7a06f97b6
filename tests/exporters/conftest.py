"""Fixtures for the exporter tests: one torch thread, the validation stream, the mixed spec."""

from __future__ import annotations

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
