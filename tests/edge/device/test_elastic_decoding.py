"""Switching, speculative decoding and switching quality on the eager elastic module (the graph
the .pte is exported from; tests/exporters/test_elastic.py runs the same on ExecuTorch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge.device.elastic import every, greedy, speculative, switching_quality
from edge.generate import greedy_generate
from edge.spec import parse_spec
from exporters.elastic import elastic_modules

CONTEXT = 48


class EagerElastic:
    """The runner interface (run(tokens, pos, member) -> logits (T, V)) over the eager modules."""

    def __init__(self, model, members):
        self.lm, self.mods = elastic_modules(model, members, CONTEXT)
        self.context, self.members = CONTEXT, list(members)

    @torch.no_grad()
    def run(self, tokens, pos, member):
        toks = torch.as_tensor(np.asarray(tokens, dtype=np.int64)).view(1, -1)
        return self.mods[member](toks, torch.tensor([pos]))[0].numpy()


@pytest.fixture(scope="module")
def corpus_val(corpus):
    return corpus.val


@pytest.fixture
def runner(tiny_model):
    cfg = tiny_model.config
    return EagerElastic(tiny_model, {"S": parse_spec("S", cfg), "XL": parse_spec("XL", cfg)})


def test_greedy_member_equals_the_model(runner, tiny_model, corpus_val):
    prompt = corpus_val[:8].tolist()
    assert greedy(runner, prompt, 12, "S") == greedy_generate(tiny_model, prompt, 12, parse_spec("S", tiny_model.config))


@pytest.mark.parametrize("k", [1, 3])
def test_speculative_is_the_verifier_greedy(runner, corpus_val, k):
    prompt = corpus_val[:8].tolist()
    want = greedy(runner, prompt, 20, "XL")
    st = speculative(runner, prompt, 20, "S", "XL", k)
    assert st.tokens == want and len(st.accepted_per_call) == st.rounds
    assert speculative(runner, prompt, 20, "XL", "XL", k).acceptance == 1.0


def test_switching_changes_tokens_only_through_the_schedule(runner, corpus_val):
    prompt = corpus_val[:8].tolist()
    assert greedy(runner, prompt, 10, every(100, ["XL", "S"])) == greedy(runner, prompt, 10, "XL")
    windows = [corpus_val[:20].tolist()]
    same = switching_quality(runner, windows, ["S"], 2)
    assert same["agreement"] == 1.0 and abs(same["loss_shared"] - same["loss_reprefill"]) < 1e-5
    mixed = switching_quality(runner, windows, ["S", "XL"], 2)
    assert mixed["tokens"] == 19 and abs(mixed["loss_shared"] - mixed["loss_reprefill"]) > 1e-6
