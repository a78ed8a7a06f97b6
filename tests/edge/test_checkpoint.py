import pytest
import torch

from edge.checkpoint import CheckpointError, load_model, save_model
from edge.slicing import slice_model


def test_round_trip_universal_and_dense(tiny_model, val_tokens, tmp_path):
    save_model(tiny_model, tmp_path / "u", {"note": "x"})
    back = load_model(tmp_path / "u")
    spec = ("S", "XL", "M", "L")
    with torch.no_grad():
        assert torch.equal(back(val_tokens, spec), tiny_model(val_tokens, spec))
    dense = slice_model(tiny_model, spec)
    save_model(dense, tmp_path / "d")
    back_dense = load_model(tmp_path / "d")
    assert back_dense.config.ffn_sizes == dense.config.ffn_sizes
    with torch.no_grad():
        assert torch.equal(back_dense(val_tokens), dense(val_tokens))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_missing(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nothing")


def test_corrupt_weights(tiny_model, tmp_path):
    save_model(tiny_model, tmp_path / "c")
    (tmp_path / "c" / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt model.safetensors"):
        load_model(tmp_path / "c")


def test_corrupt_config(tiny_model, tmp_path):
    save_model(tiny_model, tmp_path / "c")
    (tmp_path / "c" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt config.json"):
        load_model(tmp_path / "c")


def test_weights_do_not_match_config(tiny_model, tmp_path):
    save_model(tiny_model, tmp_path / "c")
    cfg = tiny_model.config.to_dict()
    cfg["d_ff"] = 512
    import json

    (tmp_path / "c" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match"):
        load_model(tmp_path / "c")


def test_failed_save_keeps_old(tiny_model, tmp_path, monkeypatch):
    """A save that fails midway leaves the previous checkpoint untouched and no temp folder."""
    save_model(tiny_model, tmp_path / "c", {"v": 1})
    import edge.checkpoint as ck

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ck, "save_file", boom)
    with pytest.raises(RuntimeError):
        save_model(tiny_model, tmp_path / "c", {"v": 2})
    assert ck.load_meta(tmp_path / "c") == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]
