"""Shared fixtures: a tiny universal model and real validation text."""

from __future__ import annotations

import pytest
import torch

from edge.config import MatFormerConfig
from edge.model import MatFormerLM

# One intra-op thread in the test process: tiny models gain nothing from two, and two threads
# that spin while the other core is busy were measured several times slower per step.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_config() -> MatFormerConfig:
    return MatFormerConfig.from_preset("tiny")


@pytest.fixture
def tiny_model(tiny_config) -> MatFormerLM:
    torch.manual_seed(0)
    return MatFormerLM(tiny_config).eval()


@pytest.fixture(scope="session")
def val_tokens() -> torch.Tensor:
    """2 x 48 tokens of real validation text (the default corpus)."""
    from edge.data import load_corpus

    val = load_corpus(max_bytes=400_000).val
    return val[: 2 * 48].view(2, 48)
