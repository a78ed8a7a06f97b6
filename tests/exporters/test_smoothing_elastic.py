"""An int8 elastic build smooths activation outliers once, over the universal model."""

from __future__ import annotations

import json

import pytest
import torch

from tests.exporters.conftest import with_outliers


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("backend, runtime, head", [("executorch", "executorch.runtime", "separate"),
                                                    ("litert", "ai_edge_litert", "tied")])
def test_int8_elastic_build_smooths_the_shared_weights_and_leaves_the_model(backend, runtime, head, trained_tiny,
                                                                            corpus, tmp_path, write_profile):
    """An int8 elastic file is smoothed once over the universal model (each member's units keep
    their scales; a .tflite's one tied table rescaled for the head), every member passes parity,
    and the caller's model is untouched afterwards. The build's tokenizer gives the .pte's EOS ids
    (the LLM runner stops on them)."""
    from dataclasses import replace

    pytest.importorskip(runtime)
    from edge.device.profiles import load_profile
    from edge.plan.elastic import build_elastic
    from edge.spec import parse_spec
    from edge.tokenizer import byte_tokenizer

    model = with_outliers(trained_tiny)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    profile = load_profile(write_profile(tmp_path, "phone", backend=backend, precision="int8", elastic=True))
    names = ["S", "XL"]
    members = {n: parse_spec(n, model.config) for n in names}
    tokenizer = replace(byte_tokenizer(), eos_ids=[258, 256])
    entry = build_elastic(model, profile, members, "XL", tmp_path, corpus.val, corpus.train, tokenizer)
    assert entry["parity"] == {n: True for n in names}
    meta = json.loads((tmp_path / entry["metadata"]).read_text())
    assert meta["smoothing"]["head"] == head and meta["smoothing"]["folds"] == 3 * model.config.n_layers + 1
    assert max(p["kl_mean"] for p in meta["parity"].values()) < 1e-3
    assert model.lm_head is None and isinstance(model.tok_emb, torch.nn.Embedding)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    if backend == "executorch":
        from executorch.runtime import Runtime

        from exporters.executorch import load_kernels

        load_kernels()
        program = Runtime.get().load_program(tmp_path / entry["file"])
        assert list(program.load_method("get_eos_ids").execute([])) == [258, 256]
