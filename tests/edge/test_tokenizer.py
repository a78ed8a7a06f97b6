"""The tokenizer travels with the model as an HF tokenizer.json (edge/tokenizer.py)."""

import json

import pytest

from edge import data
from edge.checkpoint import load_tokenizer, save_model
from edge.tokenizer import TokenizerError, byte_tokenizer

TEXTS = ["def main():\n    return 0\n", "héllo — 世界 \t\x00\x7f", "", "   leading spaces", "a < b > c <eo s>"]


@pytest.mark.parametrize("text", TEXTS)
def test_byte_tokenizer_equals_the_byte_encoding(text):
    tok = byte_tokenizer()
    assert tok.encode(text) == data.encode(text)  # [<bos>] + UTF-8 bytes
    assert tok.encode(text, bos=False) == data.encode(text, bos=False)
    assert tok.decode(tok.encode(text)) == text
    # The HF library alone (as a runtime would use it) adds <bos> through the post-processor.
    assert tok.hf.encode(text).ids == data.encode(text)


def test_special_token_text_maps_to_the_special_id():
    # As in every runtime that reads tokenizer.json: a special's text in the input is that special.
    assert byte_tokenizer().encode("x<eos>", bos=False) == [ord("x"), data.EOS]


def test_byte_tokenizer_specials():
    tok = byte_tokenizer()
    assert (tok.pad_id, tok.bos_id, tok.eos_ids, tok.vocab_size) == (data.PAD, data.BOS, [data.EOS], data.VOCAB_SIZE)
    assert tok.decode([data.BOS, 104, 105, data.EOS]) == "hi"


def test_checkpoint_carries_its_tokenizer(tmp_path, tiny_model):
    save_model(tiny_model, tmp_path / "c")
    assert (tmp_path / "c" / "tokenizer.json").is_file()
    cfg = json.loads((tmp_path / "c" / "tokenizer_config.json").read_text())
    assert (cfg["bos_token"], cfg["eos_token"], cfg["pad_token"], cfg["add_bos_token"]) == ("<bos>", "<eos>", "<pad>", True)
    tok = load_tokenizer(tmp_path / "c")
    assert tok.encode("abc") == [data.BOS, 97, 98, 99] and tok.eos_ids == [data.EOS]


def test_older_checkpoint_without_tokenizer_gets_the_byte_tokenizer(tmp_path, tiny_model):
    save_model(tiny_model, tmp_path / "c")
    (tmp_path / "c" / "tokenizer.json").unlink()
    assert load_tokenizer(tmp_path / "c").encode("x") == [data.BOS, ord("x")]


@pytest.mark.parametrize("content", ["{not json", "[]", json.dumps({"model": 3})])
def test_corrupt_tokenizer_is_one_clear_error(tmp_path, content):
    (tmp_path / "tokenizer.json").write_text(content)
    with pytest.raises(TokenizerError, match="tokenizer.json"):
        load_tokenizer(tmp_path)


def test_bad_tokenizer_config_is_one_clear_error(tmp_path):
    byte_tokenizer().save(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token_ids": [10**9]}))
    with pytest.raises(TokenizerError, match="eos_token_ids"):
        load_tokenizer(tmp_path)


def test_stand_in_tokenizer_has_exactly_the_models_ids():
    """Timing-only exports of random-weight models get a tokenizer of their vocabulary size."""
    from edge.tokenizer import stand_in_tokenizer

    assert stand_in_tokenizer(260).name == "bytes"
    tok = stand_in_tokenizer(1000)
    assert tok.vocab_size == 1000 and tok.encode("<7> <999>") == [7, 999] and tok.decode([3, 4]) == "<3> <4>"
