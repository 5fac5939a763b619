"""Tagging: entity scores against seqeval, word-to-piece alignment round trips, the offline set's rule and card."""

import random

import datasets
import pytest

from roberta_from_scratch import tagging
from roberta_from_scratch.config import IGNORE_INDEX

import seqeval.metrics  # noqa: E402 (declared in the test extra: a broken import must fail)

MODULES = frozenset({"os", "os.path", "json", "string", "re"})


@pytest.fixture(scope="module")
def tokenizer(small_tokenizer):
    return small_tokenizer


@pytest.fixture(scope="module")
def entities_set(python_docs):
    from roberta_from_scratch.qa import qa_sources

    corpus, topics = python_docs
    return tagging.build_entities(corpus, exclude_sources=qa_sources(corpus),
                                  exclude_texts=[t for part in topics.values() for t in part["text"]])


def _random_tags(rng, length):
    return [rng.choice(tagging.LABELS + ("B-X", "I-X")) for _ in range(length)]


@pytest.mark.parametrize("seed", range(6))
def test_entity_scores_equal_seqeval_on_random_tags(seed):
    """Catches: entities read differently from conlleval (an I- after O or after another type must start an
    entity; a B- right after an entity of the same type must end it), micro-averaging done per sentence, per-type
    F1 mixed up. Random tag sequences hit every one of those cases many times."""
    rng = random.Random(seed)
    gold = [_random_tags(rng, rng.randint(1, 12)) for _ in range(300)]
    predicted = [[tag if rng.random() < 0.7 else rng.choice(tagging.LABELS) for tag in tags] for tags in gold]
    ours = tagging.entity_scores(gold, predicted)
    assert ours["precision"] == pytest.approx(seqeval.metrics.precision_score(gold, predicted))
    assert ours["recall"] == pytest.approx(seqeval.metrics.recall_score(gold, predicted))
    assert ours["f1"] == pytest.approx(seqeval.metrics.f1_score(gold, predicted))
    report = seqeval.metrics.classification_report(gold, predicted, output_dict=True, zero_division=0)
    for kind in ("EXC", "FUNC", "MOD", "X"):
        assert ours[f"f1 {kind}"] == pytest.approx(report[kind]["f1-score"]), kind


def test_entity_scores_on_crafted_cases():
    """Catches: partial matches counted as hits, a type error counted as right, division by zero with no
    entities predicted."""
    gold = [["B-EXC", "I-EXC", "O", "B-FUNC"]]
    assert tagging.entity_scores(gold, gold)["f1"] == 1.0
    assert tagging.entity_scores(gold, [["B-EXC", "O", "O", "B-FUNC"]])["f1"] == pytest.approx(0.5)  # one end wrong
    assert tagging.entity_scores(gold, [["B-MOD", "I-MOD", "O", "B-FUNC"]])["precision"] == 0.5  # the type wrong
    assert tagging.entity_scores(gold, [["O"] * 4]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                                         "f1 EXC": 0.0, "f1 FUNC": 0.0}
    assert tagging.entities(["I-EXC", "I-EXC", "B-EXC", "I-MOD"]) == [("EXC", 0, 2), ("EXC", 2, 3), ("MOD", 3, 4)]
    with pytest.raises(ValueError, match="sentence 0: 4 gold tags but 3 predicted"):
        tagging.entity_scores(gold, [["O"] * 3])


def test_words_encode_to_exactly_the_sentence_tokens(tokenizer, entities_set):
    """Catches: words encoded without their own spacing (a leading space on every word would give tokens the
    pretrained model never saw in running text), and word ids that do not follow the pieces."""
    for row in entities_set["train"].select(range(300)):
        ids, word_ids = tagging.encode_words(tokenizer, row["tokens"], row["spaces"])
        assert ids == tokenizer.encode(row["text"])
        assert word_ids[0] is None and word_ids[-1] is None
        inner = word_ids[1:-1]
        assert inner == sorted(inner) and set(inner) == set(range(len(row["tokens"])))
        pieces = [tokenizer.decode([i]) for i in ids[1:-1]]
        for index, word in enumerate(row["tokens"]):  # each word is its pieces, joined
            joined = "".join(p for p, w in zip(pieces, inner) if w == index)
            assert joined.strip() == word


def test_labels_sit_on_first_pieces_and_come_back_per_word(tokenizer, entities_set):
    """Catches: a tag put on every piece (a word split in three would count three times), the special tokens
    given a label, predictions read back from the wrong piece, truncated words lost from the count."""
    row = next(r for r in entities_set["train"] if len(r["tokens"]) > 8 and any(r["ner_tags"]))
    [example] = tagging.encode_tagging(datasets.Dataset.from_list([row]), tokenizer, max_length=512)
    labelled = [i for i, label in enumerate(example["labels"]) if label != IGNORE_INDEX]
    assert len(labelled) == len(row["tokens"])
    assert [example["word_ids"][i] for i in labelled] == list(range(len(row["tokens"])))
    assert [example["labels"][i] for i in labelled] == row["ner_tags"]
    # The labels, used as predictions, come back as the words' tags.
    assert tagging.word_predictions(example["word_ids"], example["labels"], example["num_words"]) == row["ner_tags"]
    [cut] = tagging.encode_tagging(datasets.Dataset.from_list([row]), tokenizer, max_length=6)
    assert len(cut["input_ids"]) == 6 and cut["input_ids"][-1] == tokenizer.eos_token_id
    back = tagging.word_predictions(cut["word_ids"], cut["labels"], cut["num_words"])
    assert len(back) == len(row["tokens"]) and back[len(set(cut["word_ids"]) - {None}):] == \
        [0] * (len(row["tokens"]) - len(set(cut["word_ids"]) - {None}))


def test_the_labelling_rule_on_crafted_sentences():
    """Catches: a module tagged without its cue (plain English words such as "string" would be modules), dotted
    names split into several entities, an exception named before a parenthesis tagged as a call."""

    def tags(text):
        row = tagging.tag_sentence(text, MODULES)
        return [(word, tagging.LABELS[tag]) for word, tag in zip(row["tokens"], row["ner_tags"]) if tag]

    assert tags("Use os.path.join() to join a string.") == [
        ("os", "B-FUNC"), (".", "I-FUNC"), ("path", "I-FUNC"), (".", "I-FUNC"), ("join", "I-FUNC")]
    assert tags("The string module and os.path raise json.JSONDecodeError or ValueError(x).") == [
        ("string", "B-MOD"), ("os", "B-MOD"), (".", "I-MOD"), ("path", "I-MOD"),
        ("json", "B-EXC"), (".", "I-EXC"), ("JSONDecodeError", "I-EXC"), ("ValueError", "B-EXC")]
    assert tags("import re; a string of text, time.") == [("re", "B-MOD")]
    assert tags("Warning: the get_value() call.") == [("get", "B-FUNC"), ("_", "I-FUNC"), ("value", "I-FUNC")]


def test_the_offline_set_has_three_types_and_no_overlap(python_docs, entities_set):
    """Catches: a split that shares a docstring with another split or with the question-answering set, a sentence
    twice (in two splits), sentences of the pretraining validation split or the topics set, a type that the rule
    never finds, tags out of range."""
    from roberta_from_scratch.qa import qa_sources

    corpus, topics = python_docs
    sources = {split: set(part["source"]) for split, part in entities_set.items()}
    assert not sources["train"] & sources["test"] and not sources["train"] & sources["validation"]
    assert not set().union(*sources.values()) & qa_sources(corpus)
    elsewhere = {s for text in [*corpus["validation"]["text"], *(t for p in topics.values() for t in p["text"])]
                 for s in tagging.split_sentences(text)}
    texts = [t for part in entities_set.values() for t in part["text"]]
    assert len(texts) == len(set(texts)), "a sentence occurs twice"
    assert not elsewhere & set(texts), "a sentence of the pretraining validation split or the topics set"
    counts = {kind: 0 for kind in tagging.ENTITY_TYPES}
    for tags in entities_set["train"]["ner_tags"]:
        for kind, *_ in tagging.entities([tagging.LABELS[t] for t in tags]):
            counts[kind] += 1
    assert min(counts.values()) >= 100, counts
    assert tagging.label_names(entities_set) == list(tagging.LABELS)
    tagging.check_tags(entities_set, len(tagging.LABELS))


def test_bad_tags_are_refused_with_the_sentence_named():
    """Catches: a tag outside the label set, or a tag list of the wrong length, reaching the loss as an index
    error deep inside PyTorch."""
    bad = datasets.Dataset.from_list([{"tokens": ["a", "b"], "ner_tags": [0, 9]}])
    with pytest.raises(ValueError, match=r"data sentence 0: tag 9 is outside \[0, 7\)"):
        tagging.check_tags(bad, 7)
    short = datasets.Dataset.from_list([{"tokens": ["a", "b"], "ner_tags": [0]}])
    with pytest.raises(ValueError, match="2 words but 1 tags"):
        tagging.check_tags(short, 7)


def test_the_lookup_baseline_knows_seen_entities_only():
    """Catches: a baseline that looks at context (it must not, or it is not the dictionary baseline), a shorter
    match taken before a longer one, a sequence kept in the dictionary although it is mostly not an entity."""
    train = [(["ValueError", "is", "raised"], ["B-EXC", "O", "O"]),
             (["json", ".", "loads", "(", "s", ")"], ["B-FUNC", "I-FUNC", "I-FUNC", "O", "O", "O"]),
             (["json", "text"], ["O", "O"]), (["the", "json", "module"], ["O", "B-MOD", "O"]),
             (["json", "and", "json"], ["O", "O", "O"])]
    tagger = tagging.LookupTagger(train)
    assert tagger(["json", ".", "loads", "ValueError", "KeyError", "json"]) == \
        ["B-FUNC", "I-FUNC", "I-FUNC", "B-EXC", "O", "O"]  # "json" alone: an entity 1 time in 5


def test_conll_from_the_hub_takes_the_same_path(tmp_path):
    """Catches: the Hub's CoNLL-2003 (parquet copies with integer tags and empty separator rows) not reaching the
    course's schema. A local file of the same schema stands in for the download."""
    rows = [{"id": "0", "tokens": ["EU", "rejects", "German", "call"], "pos_tags": [1, 2, 3, 4],
             "chunk_tags": [1, 2, 3, 4], "ner_tags": [3, 0, 7, 0]},
            {"id": "1", "tokens": [], "pos_tags": [], "chunk_tags": [], "ner_tags": []}]
    raw = datasets.DatasetDict({s: datasets.Dataset.from_list(rows) for s in ("train", "validation", "test")})
    dataset = tagging.normalize_conll(raw)
    assert tagging.label_names(dataset) == list(tagging.CONLL_LABELS)
    assert dataset["train"].column_names == ["tokens", "ner_tags"] and len(dataset["train"]) == 1
    assert [tagging.CONLL_LABELS[t] for t in dataset["test"][0]["ner_tags"]] == ["B-ORG", "O", "B-MISC", "O"]
    with pytest.raises(Exception, match="python-docs-entities"):
        tagging.load_tagging("conll2003", verbose=False)  # offline here: one line naming the offline set


def test_words_without_spacing_encode_as_transformers_split_words(tokenizer, entities_set, tmp_path):
    """Catches: words of a data set without spacing (CoNLL-2003) encoded otherwise than transformers' tokenizer
    does with `is_split_into_words=True, add_prefix_space=True`, or word ids that differ from its `word_ids()`."""
    import transformers

    tokenizer.save(tmp_path)
    reference = transformers.RobertaTokenizer.from_pretrained(str(tmp_path), add_prefix_space=True)
    for row in entities_set["train"].select(range(200)):
        ids, word_ids = tagging.encode_words(tokenizer, row["tokens"])
        theirs = reference(row["tokens"], is_split_into_words=True)
        assert ids == theirs["input_ids"] and word_ids == theirs.word_ids()
