import pytest
import torch

from edge.data import BOS, EOS, DataError, decode, encode, eval_batches, load_corpus, random_batch


def test_tokenizer_round_trip():
    text = "héllo, wörld ✓\n"
    ids = encode(text)
    assert ids[0] == BOS and all(0 <= i < 256 for i in ids[1:])
    assert decode(ids) == text


def test_default_corpus_deterministic():
    from edge.data import _default_corpus

    a, b = _default_corpus.__wrapped__(300_000), _default_corpus.__wrapped__(300_000)  # two real reads
    assert a.sha256 == b.sha256 and torch.equal(a.val, b.val)
    assert len(a.train) > 4 * len(a.val) > 0  # ~5% of documents held out
    assert int(a.train.max()) <= EOS


def test_user_folder(tmp_path):
    for i in range(30):
        (tmp_path / f"doc{i}.txt").write_text(f"document {i} " * 50)
    (tmp_path / "image.png").write_bytes(b"\x89PNG" + bytes(range(256)))
    c = load_corpus(tmp_path)
    assert c.n_documents == 30 and len(c.val) > 0 and len(c.train) > 0


@pytest.mark.parametrize("kind", ["missing", "empty", "binary"])
def test_bad_data_paths(tmp_path, kind):
    path = tmp_path / "x"
    if kind == "empty":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(DataError, match=str(path).replace("\\", "/")[-5:]):
        load_corpus(path)


def test_batches_shapes():
    stream = torch.arange(1000)
    x, y = random_batch(stream, 4, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 16) and torch.equal(x[:, 1:], y[:, :-1])
    batches = list(eval_batches(stream, 16, 100, batch=4))
    assert sum(b[0].shape[0] for b in batches) == 6


def test_corpus_with_a_model_tokenizer_holds_out_the_same_documents(tmp_path):
    """A real (BPE) tokenizer gives its own ids; the documents held out do not depend on it."""
    from tokenizers import Tokenizer as HF, models, pre_tokenizers

    from edge.tokenizer import Tokenizer, byte_tokenizer

    docs = {f"doc{i}.txt": f"document number {i} says hello " * 20 for i in range(40)}
    for name, text in docs.items():
        (tmp_path / name).write_text(text)
    hf = HF(models.WordLevel({w: i for i, w in enumerate(["[UNK]", "document", "number", "says", "hello", "<e>"])},
                             unk_token="[UNK]"))
    hf.pre_tokenizer = pre_tokenizers.Whitespace()
    words = Tokenizer(hf, bos_id=None, eos_ids=[5], pad_id=None, add_bos=False, name="words")
    a, b = load_corpus(tmp_path, tokenizer=words), load_corpus(tmp_path, tokenizer=byte_tokenizer())
    n_val_docs = int((a.val == 5).sum())  # one <e> per held-out document
    assert 0 < n_val_docs == int((b.val == EOS).sum())
    assert a.val[:4].tolist() == [1, 2, 0, 3]  # "document number <digit: unknown> says"


def test_held_out_documents_follow_names_in_the_folder_not_its_place_or_the_tokenizer(tmp_path):
    """A moved folder holds out the same documents; with few documents, none scored into
    validation, the lowest-scored ones are held out by bytes, so every tokenizer agrees."""
    import shutil

    from edge.tokenizer import byte_tokenizer

    for name in "abc":  # none of a, b, c scores under VAL_FRACTION
        (tmp_path / "one" / "sub").mkdir(parents=True, exist_ok=True)
        (tmp_path / "one" / "sub" / f"{name}.txt").write_text(f"{name} " * 2000)
    first = load_corpus(tmp_path / "one")
    shutil.move(tmp_path / "one", tmp_path / "two")
    moved = load_corpus(tmp_path / "two", tokenizer=byte_tokenizer())
    assert torch.equal(first.val, moved.val) and first.sha256 == moved.sha256
    assert int((first.val == EOS).sum()) == 1 and len(first.val) == 4000 + 2  # one whole document held out
