"""Byte-level BPE: round trips, parity with transformers and tokenizers both ways, the trainer, files, bad input."""

import json
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from roberta_from_scratch import OfflineError
from roberta_from_scratch.tokenizer import SPECIAL_TOKENS, ByteLevelBPETokenizer, bytes_to_unicode

import tokenizers  # noqa: E402 (declared dependencies: a broken import must fail, not skip)
import transformers  # noqa: E402

ADVERSARIAL = [
    "", " ", "   ", "\t\t", "\n\n\n", "\r\n", "a", " leading space", "trailing space ", "Hello  world",
    "don't DON'T I'll we'RE it's", "'s's''", "emoji 🤗👍🏽 family 👨\u200d👩\u200d👧 flag 🇫🇷", "日本語のテキスト、中文。",
    "e\u0301 combining a\u0308\u0304", "\x00\x01\x1b[31m control \x7f", "tabs\tand\vvertical\ffeeds",
    "1234567890 3.14159 1e-10 0x1F", "ﬁ ligature, ＡＢＣ fullwidth, Ω ohm", "\u200b zero\u2028width\u2029",
    "def f(x):\n    return x ** 2  # comment", "x" * 300, "🤗" * 40, " \n \n ", "naïve café résumé",
]
PAIRS = [("A question?", "An answer."), ("", "only b"), ("日本", "emoji 🤗")]


@pytest.fixture(scope="module")
def trained(python_docs, tmp_path_factory):
    """Our tokenizer trained at the cpu scale's size, saved, and the reference libraries loaded from its files."""
    corpus, _ = python_docs
    ours = ByteLevelBPETokenizer.train(list(corpus["train"]["text"]), vocab_size=8000)
    directory = ours.save(tmp_path_factory.mktemp("ours"))
    hf = transformers.RobertaTokenizer.from_pretrained(str(directory))
    fast = tokenizers.ByteLevelBPETokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"))
    return ours, hf, fast, directory


def test_byte_table_is_a_printable_bijection():
    table = bytes_to_unicode()
    assert len(table) == 256 == len(set(table.values()))
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("A")] == "A"
    assert all(c.isprintable() and not c.isspace() for c in table.values())
    assert set(table.values()) == set(tokenizers.pre_tokenizers.ByteLevel.alphabet())


# ------------------------------------------------------------------------------------------ round trip

weird = st.sampled_from(["🤗", "👨\u200d👩\u200d👧", "中文", "\u0301", "\x00", "\x1b", "  ", "\t", "\n", "\r\n",
                         "'s", "'T"])
any_unicode = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
texts = st.lists(st.one_of(any_unicode, weird), max_size=8).map("".join)


@given(texts)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_round_trip_on_arbitrary_unicode(trained, text):
    ours = trained[0]
    assume(not any(t in text for t in SPECIAL_TOKENS))
    assert ours.decode(ours.encode(text, add_special_tokens=False)) == text


@pytest.mark.parametrize("text", ADVERSARIAL)
def test_round_trip_on_adversarial_strings(trained, text):
    ours = trained[0]
    ids = ours.encode(text)
    assert ids[0] == ours.bos_token_id and ids[-1] == ours.eos_token_id
    assert ours.decode(ids, skip_special_tokens=True) == text
    assert ours.decode(ids) == f"<s>{text}</s>"


# ------------------------------------------------------------------------------------------ parity


def test_parity_on_the_whole_validation_split(trained, python_docs):
    ours, hf, fast, _ = trained
    corpus, _ = python_docs
    texts = list(corpus["validation"]["text"])
    reference = hf(texts)["input_ids"]
    plain = hf(texts, add_special_tokens=False)["input_ids"]
    rust = [e.ids for e in fast.encode_batch(texts)]
    for text, ref, ref_plain, ref_rust in zip(texts, reference, plain, rust):
        assert ours.encode(text) == ref
        assert ours.encode(text, add_special_tokens=False) == ref_plain == ref_rust
    for a, b in zip(texts[:-1:7], texts[1::7]):
        assert ours.encode(a, b) == hf(a, b)["input_ids"]


@pytest.mark.parametrize("text", ADVERSARIAL + ["The capital of France is<mask>.", "Paris is <mask> .",
                                                "x <mask><mask> y", "<s>nested</s> a<pad>b <unk>"])
def test_parity_on_adversarial_strings(trained, text):
    ours, hf, fast, _ = trained
    assert ours.encode(text) == hf(text)["input_ids"]
    assert ours.encode(text, add_special_tokens=False) == hf(text, add_special_tokens=False)["input_ids"]
    if not any(t in text for t in SPECIAL_TOKENS):  # this reference knows no special tokens
        assert ours.encode(text, add_special_tokens=False) == fast.encode(text).ids


@pytest.mark.parametrize("a, b", PAIRS)
def test_pair_layout_matches(trained, a, b):
    ours, hf, _, _ = trained
    ids = ours.encode(a, b)
    assert ids == hf(a, b)["input_ids"]
    bos, eos = ours.bos_token_id, ours.eos_token_id
    assert ids[0] == bos and ids.count(eos) == 3 and ids[-1] == eos


def test_batches_pad_truncate_and_mask_like_transformers(trained, python_docs):
    ours, hf, _, _ = trained
    corpus, _ = python_docs
    texts = list(corpus["validation"]["text"][:9]) + sorted(corpus["validation"]["text"], key=len)[-3:]
    for max_length in (8, 33, None):
        got = ours(texts, max_length=max_length)
        want = hf(texts, padding=True, truncation=True, max_length=max_length or 512, return_tensors="pt")
        assert torch.equal(got["input_ids"], want["input_ids"])
        assert torch.equal(got["attention_mask"], want["attention_mask"])
    got = ours(texts[:6], texts[6:], max_length=40)
    want = hf(texts[:6], texts[6:], padding=True, truncation=True, max_length=40, return_tensors="pt")
    assert torch.equal(got["input_ids"], want["input_ids"])
    got = ours(texts[:3], padding="max_length", max_length=64, pad_to_multiple_of=None)
    assert got["input_ids"].shape == (3, 64)
    assert (got["input_ids"][got["attention_mask"] == 0] == ours.pad_token_id).all()
    assert ours(texts[:3], pad_to_multiple_of=8)["input_ids"].shape[1] % 8 == 0
    as_lists = ours(texts, return_tensors=None, padding=False)
    assert as_lists["input_ids"] == [ours.build_inputs(ours.encode(t, add_special_tokens=False)[:510]) for t in texts]
    assert max(len(ours.encode(t)) for t in texts) > 512  # so truncation at the model's length was exercised


def test_an_empty_second_text_is_still_a_pair(trained):
    # transformers treats text_pair="" as no pair at all (it tests the string's truth); we keep the pair layout,
    # so that a batch of pairs always has the same structure. Pinned here so a change on either side shows.
    ours, hf, _, _ = trained
    assert ours.encode("only a", "") == ours.encode("only a") + [ours.eos_token_id, ours.eos_token_id]
    assert hf("only a", "")["input_ids"] == ours.encode("only a")


# ------------------------------------------------------------------------------------------ trainer


def test_trainer_learns_the_same_merges_as_tokenizers(python_docs, tmp_path):
    corpus, _ = python_docs
    texts = list(corpus["train"]["text"])
    ours = ByteLevelBPETokenizer.train(texts, vocab_size=3000, min_frequency=2)
    ref = tokenizers.ByteLevelBPETokenizer()
    ref.train_from_iterator(texts, vocab_size=3000, min_frequency=2, special_tokens=list(SPECIAL_TOKENS),
                            show_progress=False)
    ref.save_model(str(tmp_path))
    assert ours.vocab == json.loads((tmp_path / "vocab.json").read_text())
    assert (tmp_path / "merges.txt").read_text().split("\n")[1:-1] == [f"{a} {b}" for a, b in ours.merges]


@given(st.lists(st.text(alphabet="abc ", min_size=1, max_size=12), min_size=1, max_size=60),
       st.integers(min_value=262, max_value=320), st.integers(min_value=1, max_value=3))
@settings(max_examples=60, deadline=None)
def test_trainer_ties_and_repeated_tokens_match_tokenizers(words, vocab_size, min_frequency):
    # A tiny alphabet makes equal counts (ties) and two merges of the same string common.
    ours = ByteLevelBPETokenizer.train(words, vocab_size=vocab_size, min_frequency=min_frequency)
    ref = tokenizers.ByteLevelBPETokenizer()
    ref.train_from_iterator(words, vocab_size=vocab_size, min_frequency=min_frequency,
                            special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    with tempfile.TemporaryDirectory() as directory:
        ref.save_model(directory)
        merges = (Path(directory) / "merges.txt").read_text(encoding="utf-8").split("\n")[1:-1]
    assert ours.vocab == ref.get_vocab()
    assert [f"{a} {b}" for a, b in ours.merges] == merges


def test_a_vocabulary_trained_by_tokenizers_gives_its_ids_with_ours(python_docs, tmp_path):
    corpus, _ = python_docs
    ref = tokenizers.ByteLevelBPETokenizer()
    ref.train_from_iterator(list(corpus["train"]["text"])[::3], vocab_size=1500, show_progress=False,
                            special_tokens=list(SPECIAL_TOKENS))
    ref.save_model(str(tmp_path))
    ours = ByteLevelBPETokenizer.from_pretrained(tmp_path)
    for text in list(corpus["validation"]["text"]) + ADVERSARIAL:
        assert ours.encode(text, add_special_tokens=False) == ref.encode(text).ids


def test_training_reports_the_minimum_vocabulary_and_stops_at_min_frequency():
    with pytest.raises(ValueError, match="at least 261"):
        ByteLevelBPETokenizer.train(["some text"], vocab_size=100)
    small = ByteLevelBPETokenizer.train(["ab ab ab cd"], vocab_size=10_000, min_frequency=2)
    assert small.merges[0] == ("a", "b") and small.vocab_size < 10_000  # "cd" occurs once: never merged
    assert ("c", "d") not in small.merges
    with pytest.raises(TypeError, match="not a single str"):
        ByteLevelBPETokenizer.train("a whole corpus as one string", vocab_size=300)


# ------------------------------------------------------------------------------------------ files


def test_save_then_load_is_identical(trained, tmp_path):
    ours, _, _, _ = trained
    loaded = ByteLevelBPETokenizer.from_pretrained(ours.save(tmp_path / "again"))
    assert loaded.vocab == ours.vocab and loaded.merges == ours.merges
    assert (tmp_path / "again" / "merges.txt").read_text().startswith("#version: 0.2\n")
    for text in ADVERSARIAL:
        assert loaded.encode(text) == ours.encode(text)


def test_loaded_vocabularies_keep_their_own_special_ids(trained, tmp_path):
    ours, _, _, _ = trained
    # roberta-base's layout: <s> <pad> </s> <unk> first, <mask> last (id 50264 there).
    order = [t for t in ours.vocab if t != "<mask>"] + ["<mask>"]
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(order)}, ensure_ascii=False))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in ours.merges))
    loaded = ByteLevelBPETokenizer.from_pretrained(tmp_path)
    assert loaded.mask_token_id == len(order) - 1 and loaded.pad_token_id == 1 and loaded.bos_token_id == 0
    hf = transformers.RobertaTokenizer.from_pretrained(str(tmp_path))
    assert loaded.encode("The capital of France is<mask>.") == hf("The capital of France is<mask>.")["input_ids"]


def test_encode_batch_fast_path_gives_identical_ids(trained, python_docs):
    ours, _, _, _ = trained
    corpus, _ = python_docs
    texts = list(corpus["validation"]["text"]) + ADVERSARIAL + ["is <mask> here", "<s>x</s>"]
    assert ours.encode_batch(texts, fast=True) == ours.encode_batch(texts, fast=False)
    assert ours.encode_batch(texts, add_special_tokens=False, fast=True) == [ours.encode(t, add_special_tokens=False)
                                                                             for t in texts]


# ------------------------------------------------------------------------------------------ bad input


def test_bad_input_gets_clear_errors(trained, tmp_path):
    ours, _, _, directory = trained
    with pytest.raises(TypeError, match="text must be a str, not int"):
        ours.encode(5)
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str, not NoneType"):
        ours(["fine", None])
    with pytest.raises(ValueError, match="id 8000 is outside the vocabulary"):
        ours.decode([0, 8000])
    with pytest.raises(ValueError, match="id -1 is outside"):
        ours.decode([-1])
    (tmp_path / "vocab.json").write_text((directory / "vocab.json").read_text())
    with pytest.raises(FileNotFoundError, match="merges.txt is missing"):
        ByteLevelBPETokenizer.from_pretrained(tmp_path)
    (tmp_path / "merges.txt").write_text("#version: 0.2\nĠ t\nthree parts here\n")
    with pytest.raises(ValueError, match="line 3"):
        ByteLevelBPETokenizer.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        ByteLevelBPETokenizer.from_pretrained(tmp_path / "nowhere" / "at" / "all")


def test_a_lone_surrogate_and_an_empty_batch_get_clear_errors(trained):
    """Catches: a lone surrogate (text decoded with errors="surrogateescape") failing with UnicodeEncodeError from
    inside the byte encoder, and an empty batch failing with "max() arg is an empty sequence"."""
    ours = trained[0]
    with pytest.raises(ValueError, match=r"text holds a lone surrogate '\\udcff' at position 3.*'replace'"):
        ours.encode("abc\udcffdef")
    with pytest.raises(ValueError, match=r"texts\[1\] holds a lone surrogate '\\ud800' at position 0"):
        ours(["fine", "\ud800"])
    with pytest.raises(ValueError, match="empty batch: give at least one text"):
        ours([])
    assert ours.decode(ours.encode_ordinary("caf\u00e9 \U0001f600")) == "caf\u00e9 \U0001f600"  # real non-ASCII still encodes


def test_hub_id_offline_fails_in_one_line():
    with pytest.raises(OfflineError) as info:
        ByteLevelBPETokenizer.from_pretrained("FacebookAI/roberta-base")
    assert "\n" not in str(info.value) and "HF_HUB_OFFLINE" in str(info.value) and "train" in str(info.value)


def test_course_tokenizer_trains_once_then_loads(python_docs, tmp_path, monkeypatch, capsys):
    from roberta_from_scratch import data
    from roberta_from_scratch.artifacts import course_tokenizer

    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    first = course_tokenizer(600)
    second = course_tokenizer(600)
    out = capsys.readouterr().out
    assert "trained and saved" in out and "loaded" in out.split("\n")[1]
    assert first.vocab == second.vocab and first.merges == second.merges and first.vocab_size == 600
    assert (tmp_path / "artifacts" / "tokenizer-python-docs-600" / "merges.txt").is_file()
