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
        assert torch.equal(got["input_ids"], want["input_ids"])  # exact: integer ids
        assert torch.equal(got["attention_mask"], want["attention_mask"])  # exact: integers
    got = ours(texts[:6], texts[6:], max_length=40)
    want = hf(texts[:6], texts[6:], padding=True, truncation=True, max_length=40, return_tensors="pt")
    assert torch.equal(got["input_ids"], want["input_ids"])  # exact: integer ids
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


# ------------------------------------------------------------------------------------------ offsets

OFFSET_TEXTS = ADVERSARIAL + [
    "The capital of France is<mask>.", "Paris is <mask> .", "x \n\t<mask><mask> y", "<s>nested</s> a<pad>b <unk>",
    "x    y", "a  \n  b\n\n\n    c", "  two leading, two trailing  ", "Ελληνικά και Кириллица", "한국어 텍스트",
    "مرحبا بالعالم", "🤗🤗🤗 three 👍🏽👍🏽", "for (int i = 0; i < n; ++i) { s += a[i]; }",
]


@pytest.fixture(scope="module")
def roberta_fast(trained):
    """``tokenizers`` with our files and RoBERTa's post-processor as roberta-base's tokenizer.json sets it
    (``trim_offsets=True``, no prefix space): the reference for offsets. ``to_tokenizers()`` alone keeps untrimmed
    offsets (its ByteLevel post-processor has trim_offsets=False)."""
    from tokenizers.processors import RobertaProcessing

    ours = trained[0]
    fast = ours.to_tokenizers()
    fast.post_processor = RobertaProcessing(("</s>", ours.eos_token_id), ("<s>", ours.bos_token_id),
                                            trim_offsets=True, add_prefix_space=False)
    return fast


def assert_offsets_like_the_references(ours, hf, fast, text, pair=None):
    for special in (True, False):
        ids, offsets, sequence_ids = ours.encode_with_offsets(text, pair, add_special_tokens=special)
        assert ids == ours.encode(text, pair, add_special_tokens=special)
        ref = fast.encode(text, pair, add_special_tokens=special)
        assert (ids, offsets, sequence_ids) == (ref.ids, ref.offsets, ref.sequence_ids), (text, pair)
        if pair != "":  # transformers takes "" for no pair (test_an_empty_second_text_is_still_a_pair)
            theirs = hf(text, pair, add_special_tokens=special, return_offsets_mapping=True)
            assert offsets == theirs["offset_mapping"] and sequence_ids == theirs.sequence_ids(), (text, pair)


@pytest.mark.parametrize("text", OFFSET_TEXTS)
def test_offsets_equal_transformers_and_tokenizers(trained, roberta_fast, text):
    """Catches: offsets that differ from transformers' RoBERTa tokenizer and from ``tokenizers`` (both with
    trim_offsets=True): spaces not trimmed, a partial-character token not widened to its character, spans counted
    in bytes instead of characters, special tokens in the text (<mask> with the spaces it takes) misplaced, added
    <s> and </s> not at (0, 0) and None. Exact equality holds for tokens that hold part of a character too: both
    references widen such a token to the whole character, as we do."""
    ours, hf, _, _ = trained
    assert_offsets_like_the_references(ours, hf, roberta_fast, text)


def test_offsets_equal_the_references_on_the_validation_split_and_pairs(trained, roberta_fast, python_docs):
    """Catches: an offset difference on real text (code, prose, indentation) that the hand-picked strings miss, and
    in pairs: the second text's offsets not indexing into text_pair, its sequence id not 1, the pair layout's four
    added tokens not at (0, 0)."""
    ours, hf, _, _ = trained
    corpus, _ = python_docs
    texts = list(corpus["validation"]["text"])
    for text in texts:
        assert_offsets_like_the_references(ours, hf, roberta_fast, text)
    for a, b in [*PAIRS, ("only a", ""), *zip(texts[:-1:7], texts[1::7])]:
        assert_offsets_like_the_references(ours, hf, roberta_fast, a, b)
        ids, offsets, sequence_ids = ours.encode_with_offsets(a, b)
        added = [i for i, s in enumerate(sequence_ids) if s is None]
        n = sequence_ids.count(0)
        assert added == [0, n + 1, n + 2, len(ids) - 1] and all(offsets[i] == (0, 0) for i in added)
        assert_spans_round_trip(ours, b, ids[n + 3:-1], offsets[n + 3:-1])


_BYTE_OF = {c: b for b, c in bytes_to_unicode().items()}


def assert_spans_round_trip(ours, text, ids, offsets):
    """Each span cuts ``text`` between characters at what the token holds, spaces at its ends left out."""
    starts = [start for start, _ in offsets]
    assert starts == sorted(starts) and all(0 <= start <= end <= len(text) for start, end in offsets)
    covered = set()
    for i, (start, end) in zip(ids, offsets):
        token = ours.id_to_token(i)
        if i in ours.special_ids:  # written in the text
            assert text[start:end] == token
        else:
            held = bytes(_BYTE_OF[c] for c in token).strip(b" ")
            try:
                assert text[start:end] == held.decode("utf-8")  # whole characters
            except UnicodeDecodeError:  # part of a character: the span is the whole character(s) around it
                assert held in text[start:end].encode("utf-8") and 0 < end - start <= len(held)
        covered.update(range(start, end))
    for k in set(range(len(text))) - covered:  # only trimmed spaces fall between spans, and those <mask> takes
        assert text[k] == " " or (text[k].isspace() and text[k:].lstrip().startswith("<mask>")), (text, k)


offset_texts = st.lists(st.one_of(any_unicode, weird, st.sampled_from(["<mask>", " <mask>", "<s>", "   "])),
                        max_size=8).map("".join)


@given(offset_texts)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_offsets_round_trip_pieces_of_arbitrary_unicode(trained, roberta_fast, text):
    """Catches: a span that does not give back what its token holds (text[start:end] against the token's bytes),
    spans off by the bytes of earlier multi-byte characters, a character that no span covers, and any text,
    however odd, where we and ``tokenizers`` disagree."""
    ours = trained[0]
    ids, offsets, sequence_ids = ours.encode_with_offsets(text, add_special_tokens=False)
    ref = roberta_fast.encode(text, add_special_tokens=False)
    assert (ids, offsets) == (ref.ids, ref.offsets) and sequence_ids == [0] * len(ids)
    assert_spans_round_trip(ours, text, ids, offsets)


def test_offsets_of_spaces_split_characters_and_mask(trained):
    """Catches: the cases the rules name (ByteLevelBPETokenizer.encode_with_offsets) drifting unseen: a lone space
    token's empty span, a character split over several tokens, <mask> and the space it takes, bad input."""
    ours = trained[0]
    ids, offsets, _ = ours.encode_with_offsets("x  y", add_special_tokens=False)
    assert [ours.id_to_token(i) for i in ids] == ["x", "Ġ", "Ġy"] and offsets == [(0, 1), (2, 2), (3, 4)]
    ids, offsets, _ = ours.encode_with_offsets("a🤗", add_special_tokens=False)
    assert len(ids) > 2 and offsets == [(0, 1)] + [(1, 2)] * (len(ids) - 1)  # 🤗 in pieces, each spanning all of it
    ids, offsets, sequence_ids = ours.encode_with_offsets("is <mask>.", "b")
    mask = ids.index(ours.mask_token_id)
    assert offsets[mask] == (3, 9) and sequence_ids[mask] == 0  # "<mask>" without the space it took, in text 0
    with pytest.raises(TypeError, match="text must be a str, not int"):
        ours.encode_with_offsets(5)
    with pytest.raises(ValueError, match="text_pair holds a lone surrogate"):
        ours.encode_with_offsets("fine", "\udcff")


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
    from roberta_from_scratch.course.artifacts import course_tokenizer

    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    first = course_tokenizer(600)
    second = course_tokenizer(600)
    out = capsys.readouterr().out
    assert "trained and saved" in out and "loaded" in out.split("\n")[1]
    assert first.vocab == second.vocab and first.merges == second.merges and first.vocab_size == 600
    assert (tmp_path / "artifacts" / "tokenizer-python-docs-600" / "merges.txt").is_file()
