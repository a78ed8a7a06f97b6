"""Shared fixtures: a tiny universal model and real validation text."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

pytest_plugins = ("tests.schedule",)  # heaviest test files first (tests/durations.json)

# `make test` runs test files in parallel workers (pytest-xdist). Each worker gets its own temp
# folder, which the commands it starts inherit (TMPDIR), so a test that looks for leftover
# temporaries in the temp folder sees only its own worker's.
if os.environ.get("PYTEST_XDIST_WORKER"):
    _worker_tmp = tempfile.mkdtemp(prefix=f"pytest-{os.environ['PYTEST_XDIST_WORKER']}-")
    os.environ["TMPDIR"] = _worker_tmp
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again
    atexit.register(shutil.rmtree, _worker_tmp, True)

from edge.config import MatFormerConfig
from edge.model import MatFormerLM, lm_loss

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
def corpus():
    from edge.data import load_corpus

    return load_corpus(max_bytes=400_000)


@pytest.fixture(scope="session")
def val_tokens(corpus) -> torch.Tensor:
    """2 x 48 tokens of real validation text (the default corpus)."""
    return corpus.val[: 2 * 48].view(2, 48)


@pytest.fixture(scope="session")
def trained_tiny(corpus) -> MatFormerLM:
    """The `tiny` universal model after 150 sampled-granularity steps on real text.

    Trained so that its next-token distributions are peaked like a real model's: greedy
    agreement of quantized artifacts is meaningless on the flat logits of random weights.
    """
    from edge.data import random_batch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # whatever a test before it set (training tests may use 2 threads)
    torch.manual_seed(0)
    cfg = MatFormerConfig.from_preset("tiny")
    model = MatFormerLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    names = cfg.granularity_names
    for step in range(150):
        x, y = random_batch(corpus.train, 8, 64, gen)
        loss = lm_loss(model(x, (names[step % len(names)],) * cfg.n_layers), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    return model.eval()


# A test board's device profile (TOML), for the build and app tests.
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


@pytest.fixture(scope="session")
def write_profile():
    """write_profile(folder, name, **fields) -> the path of a test board's profile TOML."""
    return _write_profile
