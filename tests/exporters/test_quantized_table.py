"""int8 ExecuTorch programs store the tied embedding/head table quantized; every backend stores
it as often as its registry record says.

A tied table is stored twice in a ``.pte`` (the lookup reads the program's constant, XNNPACK packs
its own copy for the head); at int8 both copies are int8, so the whole file is smaller than one
fp32 copy of the table. Each program runs on the real runtime and agrees with eager PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge.config import MatFormerConfig
from edge.model import MatFormerLM
from edge.spec import parse_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONTEXT = 32
# A table (4096 x 64 fp32 = 1 MiB) far larger than the one layer's weights (~70 KiB)
CONFIG = dict(vocab_size=4096, d_model=64, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=128)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MatFormerLM(MatFormerConfig(**CONFIG)).eval()


def table_bytes(model) -> int:
    return model.tok_emb.weight.numel() * 4


def close(got: np.ndarray, ref: np.ndarray) -> None:
    """int8 weights and activations: logits correlate with eager's and share their top token."""
    assert np.corrcoef(got.ravel(), ref.ravel())[0, 1] > 0.99
    assert got.argmax() == ref.argmax()


def test_int8_pte_holds_the_table_as_int8(model, tmp_path):
    pytest.importorskip("executorch.runtime")
    from exporters import executorch as et

    path = tmp_path / "m.pte"
    et.export(model, "int8", path, context=CONTEXT)
    # fp32 would be two copies (2 MiB); two int8 copies + scales ~0.55 MiB
    assert path.stat().st_size < table_bytes(model) * 0.6
    runner = et.load_runner(path)
    tokens = np.arange(3, 15).reshape(1, -1)
    with torch.no_grad():
        ref = model(torch.as_tensor(tokens))[0].numpy()
    close(runner.forward(tokens, 0)[0], ref[-1])
    with torch.no_grad():  # a decode step reads the cache the prompt wrote
        ref = model(torch.as_tensor(np.append(tokens, [[7]], axis=1)))[0, -1].numpy()
    close(runner.decode(7, tokens.shape[1])[0], ref)
    assert model.lm_head is None  # the export quantized a copy, not the caller's model


def test_int8_elastic_pte_holds_the_table_once_per_copy(model, tmp_path):
    pytest.importorskip("executorch.runtime")
    from exporters.elastic import export_elastic
    from exporters.elastic_runner import ElasticRunner

    cfg = model.config
    members = {"S": parse_spec("S", cfg), "XL": parse_spec("XL", cfg)}
    path = tmp_path / "e.pte"
    export_elastic(model, members, path, context=CONTEXT, precision="int8")
    # members share one int8 head (3 copies, one per lowered method, would be ~0.8 MiB alone)
    assert path.stat().st_size < table_bytes(model) * 0.75
    runner = ElasticRunner(path, list(members))
    tokens = np.arange(3, 15)
    for name, spec in members.items():
        with torch.no_grad():
            ref = model(torch.as_tensor(tokens)[None], spec)[0].numpy()
        close(runner.run(tokens, 0, name)[-1], ref[-1])


@pytest.mark.parametrize("backend, precision, width", [
    ("executorch", "fp32", 4), ("litert", "fp32", 4), ("litert", "int8", 1), ("coreml", "fp16", 2)])
def test_each_backend_stores_the_table_as_often_as_its_record_says(model, tmp_path, backend, precision, width):
    """Backend.table_copies (the roofline estimate's weight bytes) against the written file: a
    .pte holds the tied table twice, a .tflite and an .mlpackage once, at the precision's width."""
    import exporters
    from edge.tokenizer import stand_in_tokenizer
    from exporters.backends import get_backend
    from exporters.base import file_size

    record = get_backend(backend)
    pytest.importorskip(record.probe)
    art = exporters.export_model(model, backend, precision, tmp_path, context=CONTEXT, parity=False,
                                 tokenizer=stand_in_tokenizer(CONFIG["vocab_size"]))
    size = file_size(art.path)  # an .mlpackage is a folder
    table = model.tok_emb.weight.numel() * width
    # one more copy would add a whole table; the layer's weights (~70 KiB at fp32) and the
    # container (a .tflite's signatures: ~170 KiB here) stay under one
    assert record.table_copies * table <= size < (record.table_copies + 1) * table, (size, table)
