"""Packing and masking: the statistics of the corruption, dynamic versus static, and lossless packing."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from roberta_from_scratch.packing import pack_dataset, pack_full_sentences, split_sentences
from roberta_from_scratch.masking import DataCollatorForMLM, StaticMaskingDataset
from roberta_from_scratch.tokenizer import ByteLevelBPETokenizer

BOS, PAD, EOS, MASK = 0, 1, 2, 4


@pytest.fixture(scope="module")
def tokenizer(python_docs):
    corpus, _ = python_docs
    return ByteLevelBPETokenizer.train(list(corpus["train"]["text"]), vocab_size=2000)


@pytest.fixture(scope="module")
def blocks(python_docs, tokenizer):
    corpus, _ = python_docs
    return list(pack_dataset(corpus["train"], tokenizer, max_len=128)["input_ids"])


def test_masking_statistics_over_200k_tokens(tokenizer, blocks):
    collator = DataCollatorForMLM(tokenizer, seed=0)
    examples = blocks[:1600]  # ~180k real tokens, plus padding from ragged lengths
    originals, corrupted, labels, masks = [], [], [], []
    for start in range(0, len(examples), 64):
        chunk = examples[start:start + 64]
        batch = collator(chunk)
        padded = collator.pad(chunk)["input_ids"]
        originals.append(padded.flatten())
        corrupted.append(batch["input_ids"].flatten())
        labels.append(batch["labels"].flatten())
        masks.append(batch["attention_mask"].flatten())
    original, corrupt, label, mask = (torch.cat(t) for t in (originals, corrupted, labels, masks))
    special = torch.isin(original, torch.tensor(sorted(tokenizer.special_ids))) | (mask == 0)
    eligible = int((~special).sum())
    assert eligible > 200_000 - 40_000 and len(original) > 200_000
    selected = label != -100
    assert not (selected & special).any()  # specials and padding never selected
    assert abs(selected.sum().item() / eligible - 0.15) < 0.005
    assert torch.equal(label[selected], original[selected])  # labels are exactly the original ids (integers)
    n = selected.sum().item()
    masked = (corrupt == MASK) & selected
    kept = (corrupt == original) & selected
    randomised = selected & ~masked & ~kept
    assert abs(masked.sum().item() / n - 0.8) < 0.01
    assert abs(randomised.sum().item() / n - 0.1) < 0.01
    assert abs(kept.sum().item() / n - 0.1) < 0.01 + 1 / 2000  # a random pick can equal the original (1 in V)
    assert not torch.isin(corrupt[randomised], torch.tensor(sorted(tokenizer.special_ids))).any()
    assert torch.equal(corrupt[~selected], original[~selected])  # nothing else changes (exact: integer ids)


def test_dynamic_masks_change_static_masks_repeat_seeds_reproduce(tokenizer, blocks):
    collator = DataCollatorForMLM(tokenizer, seed=1)
    first, second = collator(blocks[:8]), collator(blocks[:8])
    # Every comparison here is exact: integer ids and labels, drawn from seeded generators by the same calls.
    assert not torch.equal(first["labels"], second["labels"])
    again = DataCollatorForMLM(tokenizer, seed=1)(blocks[:8])  # exact: the same seed, the same integer draws
    assert torch.equal(again["input_ids"], first["input_ids"]) and torch.equal(again["labels"], first["labels"])
    static = StaticMaskingDataset(blocks[:4], collator, duplicates=10, seed=0)
    assert len(static) == 40
    # Epoch e reads copy e mod 10 of each block, as BERT's 10 duplicates: epochs 1 and 11 see the same masks, epochs
    # 1 and 2 different ones; the raw blocks, masked afresh each time they are drawn, never repeat. (Catches a
    # static arm whose copies share one mask, or one that the collator masks again.)
    def epoch(e):
        return collator([static[b * 10 + e % 10] for b in range(4)])

    # exact, all of them: integer ids and labels
    assert torch.equal(epoch(0)["labels"], epoch(10)["labels"]) and torch.equal(epoch(0)["input_ids"],
                                                                                epoch(10)["input_ids"])
    assert not torch.equal(epoch(0)["labels"], epoch(1)["labels"])  # exact: integer labels
    assert not torch.equal(collator(blocks[:4])["labels"], collator(blocks[:4])["labels"])  # exact: integers
    # exact: precomputed from the seed, rebuilt, it is the same integers
    assert torch.equal(StaticMaskingDataset(blocks[:4], collator, duplicates=10, seed=0)[3]["labels"],
                       static[3]["labels"])
    assert not torch.equal(static[0]["labels"], static[1]["labels"])  # 10 different masks per example (exact: ints)
    batch = collator([static[0], static[10]])  # padded, not masked again (exact: integer labels)
    assert torch.equal(batch["labels"][0, : len(static[0]["labels"])], static[0]["labels"])


def test_collator_pads_to_a_multiple_and_truncates(tokenizer):
    collator = DataCollatorForMLM(tokenizer, pad_to_multiple_of=8, max_length=10, seed=0)
    batch = collator([[0, 5, 6, 2], {"input_ids": [0] + list(range(5, 20)) + [2]}])
    assert batch["input_ids"].shape == (2, 16)  # 10 tokens after truncation, padded to 16
    assert batch["attention_mask"].sum(1).tolist() == [4, 10]
    assert collator.pad([{"input_ids": [0] + list(range(5, 20)) + [2]}])["input_ids"][0, 9].item() == 2  # </s> kept
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()


def test_collator_bad_input(tokenizer):
    with pytest.raises(ValueError, match=r"mlm_probability=1.5 must be in \(0, 1\)"):
        DataCollatorForMLM(tokenizer, mlm_probability=1.5)
    with pytest.raises(ValueError, match="sum to at most 1"):
        DataCollatorForMLM(tokenizer, mask_replace_prob=0.8, random_replace_prob=0.3)
    with pytest.raises(ValueError, match="empty batch"):
        DataCollatorForMLM(tokenizer)([])
    # Catches: ids beyond the vocabulary failing with an IndexError from inside the masking, negative ids passing
    # silently into the model, and float "ids" truncated to integers without a word.
    with pytest.raises(ValueError, match=rf"id {len(tokenizer) + 5} is outside the tokenizer's vocabulary "
                                         rf"\(0 to {len(tokenizer) - 1}\).*another tokenizer"):
        DataCollatorForMLM(tokenizer)([[0, 5, 2], [0, len(tokenizer) + 5, 2]])
    with pytest.raises(ValueError, match="id -3 is outside"):
        DataCollatorForMLM(tokenizer)([[0, -3, 2]])
    with pytest.raises(TypeError, match="example 0 holds torch.float32 values: token ids must be integers"):
        DataCollatorForMLM(tokenizer)([[0, 2.5, 2]])

    class NoMask:
        mask_token_id = None

    with pytest.raises(ValueError, match="no mask token"):
        DataCollatorForMLM(NoMask())


def test_the_collator_works_with_a_transformers_tokenizer(tokenizer, tmp_path):
    import transformers
    hf = transformers.RobertaTokenizer.from_pretrained(str(tokenizer.save(tmp_path)))
    ours = DataCollatorForMLM(tokenizer, seed=3)([[0, 10, 11, 12, 2]] * 4)
    theirs = DataCollatorForMLM(hf, seed=3)([[0, 10, 11, 12, 2]] * 4)
    assert torch.equal(ours["input_ids"], theirs["input_ids"])  # exact: integer ids from the same seed


# ------------------------------------------------------------------------------------------ packing

documents_strategy = st.lists(st.lists(st.lists(st.integers(5, 99), min_size=1, max_size=40), max_size=6),
                              min_size=1, max_size=12)


@given(documents_strategy, st.integers(min_value=3, max_value=64))
@settings(max_examples=200, deadline=None)
def test_packing_loses_and_duplicates_nothing(documents, max_len):
    blocks = pack_full_sentences(documents, max_len, BOS, EOS)
    assert all(len(b) <= max_len and b[0] == BOS and BOS not in b[1:] for b in blocks)
    content = [t for b in blocks for t in b[1:] if t != EOS]
    assert content == [t for doc in documents for sentence in doc for t in sentence]
    stream = [t for b in blocks for t in b[1:]]
    sentences = sum(len(doc) for doc in documents)
    assert stream.count(EOS) >= sentences  # every sentence ends with </s> (plus separators)


def test_empty_documents_and_sentences_do_not_change_the_stream():
    """Catches: each empty document (a blank paragraph in a local file) adding another </s> separator, and an
    empty sentence adding a lone </s>."""
    docs = [[[10, 11], [12]], [[20, 21, 22]], [[30]]]
    with_empties = [[], [[10, 11], [], [12]], [], [], [[20, 21, 22]], [[]], [[30]], []]
    for max_len in (8, 64):
        assert pack_full_sentences(with_empties, max_len, BOS, EOS) == pack_full_sentences(docs, max_len, BOS, EOS)


def test_documents_are_separated_by_an_extra_eos_and_sentences_stay_whole():
    docs = [[[10, 11], [12]], [[20, 21, 22]], [[30]]]
    assert pack_full_sentences(docs, 64, BOS, EOS) == [[0, 10, 11, 2, 12, 2, 2, 20, 21, 22, 2, 2, 30, 2]]
    # a block of 8: the second document's sentence does not fit after the separator, so it opens the next block
    assert pack_full_sentences(docs, 8, BOS, EOS) == [[0, 10, 11, 2, 12, 2, 2], [0, 20, 21, 22, 2, 2, 30, 2]]
    long = [[list(range(5, 25))]]  # a 20-token sentence in blocks of 8: split
    assert pack_full_sentences(long, 8, BOS, EOS) == [[0, *range(5, 12)], [0, *range(12, 19)],
                                                      [0, *range(19, 25), 2]]


def test_packed_corpus_reproduces_the_tokenized_corpus(python_docs, tokenizer, blocks):
    corpus, _ = python_docs
    expected = [t for text in corpus["train"]["text"] for s in split_sentences(text)
                for t in tokenizer.encode(s, add_special_tokens=False)]
    assert [t for b in blocks for t in b[1:] if t != EOS] == expected
    assert all(len(b) <= 128 and b[0] == BOS for b in blocks)
    fill = sum(map(len, blocks)) / (128 * len(blocks))
    assert fill > 0.8, fill


def test_split_sentences():
    text = "First sentence. Second one!\nIt wraps here.\n\nNew paragraph? Yes (really). e.g. this stays"
    assert split_sentences(text) == ["First sentence.", "Second one!", "It wraps here.", "New paragraph?",
                                     "Yes (really). e.g. this stays"]
