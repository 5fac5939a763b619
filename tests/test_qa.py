"""Question answering: SQuAD's scores on crafted cases, windows and answer positions round trip, the offline set."""

import datasets
import pytest

from roberta_from_scratch import qa


@pytest.fixture(scope="module")
def tokenizer(small_tokenizer):
    return small_tokenizer


@pytest.fixture(scope="module")
def qa_set(python_docs):
    corpus, _ = python_docs
    return qa.build_qa(corpus)


def test_squad_normalisation_and_scores_on_crafted_cases():
    """Catches: articles, punctuation or case counted against an answer; F1 over characters instead of words;
    repeated words counted more often than both sides hold them; the best gold answer not taken."""
    assert qa.normalize_answer("The  Absolute path, of 'path'.") == "absolute path of path"
    assert qa.normalize_answer("an theory") == "theory" and qa.normalize_answer("another") == "another"
    assert qa.exact_match("the list of names", "List of names!") == 1.0
    assert qa.f1_score("a list of file names", "the list of names") == pytest.approx(2 * 0.75 * 1 / 1.75)
    assert qa.f1_score("path path path", "path") == pytest.approx(2 * (1 / 3) * 1 / (4 / 3))
    assert qa.f1_score("", "path") == 0.0 and qa.f1_score("the", "a") == 0.0
    rows = datasets.Dataset.from_list([
        {"id": "q1", "answers": {"text": ["red apples", "apples"], "answer_start": [0, 4]}},
        {"id": "q2", "answers": {"text": ["ValueError"], "answer_start": [0]}}])
    scores = qa.squad_scores({"q1": "apples", "q2": "TypeError"}, rows)
    assert scores == {"exact_match": 50.0, "f1": 50.0}
    with pytest.raises(ValueError, match="1 questions have no prediction"):
        qa.squad_scores({"q1": "apples"}, rows)


def test_windows_cover_the_context_and_answers_map_back_to_their_text(tokenizer, qa_set):
    """Catches: windows that skip tokens or overlap by other than the stride, offsets that do not point at the
    context's characters, an answer mapped to the wrong tokens, a window without the whole answer not pointed at
    <s>. Every answer of the set is mapped to tokens and back."""
    checked = 0
    for row in qa_set["train"]:
        context, start = row["context"], row["answers"]["answer_start"][0]
        answer = row["answers"]["text"][0]
        windows = qa.make_windows(tokenizer, row["question"], context, max_length=64, stride=16)
        assert all(len(w["input_ids"]) <= 64 for w in windows)
        c_ids = tokenizer.encode(context, add_special_tokens=False)
        assert windows[0]["input_ids"][windows[0]["context_start"]:windows[0]["context_end"]] == \
            c_ids[: windows[0]["context_end"] - windows[0]["context_start"]]
        stride = min(16, (windows[0]["context_end"] - windows[0]["context_start"]) // 2)  # a long question: less
        for a, b in zip(windows, windows[1:]):  # neighbours share exactly `stride` tokens
            assert a["input_ids"][a["context_end"] - stride:a["context_end"]] == \
                b["input_ids"][b["context_start"]:b["context_start"] + stride]
        rebuilt = windows[0]["input_ids"][windows[0]["context_start"]:windows[0]["context_end"]]
        for b in windows[1:]:  # the windows, overlaps removed, are the whole context, in order
            rebuilt += b["input_ids"][b["context_start"] + stride:b["context_end"]]
        assert rebuilt == c_ids
        whole = 0
        for window in windows:
            first, last = qa.answer_positions(window, start, start + len(answer))
            if (first, last) == (0, 0):
                continue
            whole += 1
            assert context[window["offsets"][first][0]:window["offsets"][last][1]] == answer
        ids, offsets, _ = tokenizer.encode_with_offsets(context, add_special_tokens=False)
        answer_length = sum(1 for s, e in offsets if s < start + len(answer) and e > start)
        assert whole >= 1 or answer_length > stride  # an answer no longer than the stride is whole somewhere
        checked += 1
    assert checked == len(qa_set["train"]) > 100


def test_best_span_is_the_best_valid_span():
    """Catches: an end before the start accepted, a span longer than the limit, a span in the question chosen,
    a brute-force search that differs from the decoder's."""
    import itertools

    import torch

    window = {"context_start": 3, "context_end": 9}
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        start, end = torch.randn(10, generator=g), torch.randn(10, generator=g)
        score, s, e = qa.best_span(start, end, window, max_answer_tokens=3)
        # the decoder's own arithmetic (each score a Python float, the two added in float64), so that the argmax is
        # the same even on a near-tie: exact
        candidates = [(float(start[i]) + float(end[j]), i, j) for i, j in itertools.product(range(3, 9), repeat=2)
                      if i <= j < i + 3]
        assert (s, e) == max(candidates)[1:] and score == max(candidates)[0]


def test_questions_of_the_offline_set(qa_set, python_docs):
    """Catches: answers that are not where answer_start says, questions from the pretraining validation split,
    splits sharing a docstring, a question type that the rule never produces."""
    corpus, _ = python_docs
    qa.check_answers(qa_set)
    validation = set(corpus["validation"]["text"])
    contexts = {split: set(part["context"]) for split, part in qa_set.items()}
    assert not contexts["train"] & contexts["test"] and not contexts["train"] & contexts["validation"]
    assert not validation & set().union(*contexts.values())
    kinds = [row_id.rsplit(":", 1)[1] for row_id in qa_set["train"]["id"]]
    assert kinds.count("return") > 200 and kinds.count("raise") > 20
    row = qa_set["train"][0]
    assert row["question"].endswith(("return?", "raise?"))


def test_bad_answers_and_windows_get_clear_errors(tokenizer):
    """Catches: an answer that is not a substring of its context trained as if it were; a question so long that no
    window has room for the context, failing as an endless loop or an empty window; a long question that leaves a
    window shorter than the stride, whose windows would never move on."""
    bad = datasets.Dataset.from_list([{"id": "x", "question": "Q?", "context": "Return a list.",
                                       "answers": {"text": ["a tuple"], "answer_start": [7]}}])
    with pytest.raises(ValueError, match=r"'x': the answer 'a tuple' is not the context's text at character 7"):
        qa.check_answers(bad)
    with pytest.raises(ValueError, match="leaving 0 for the context: shorten the question"):
        qa.make_windows(tokenizer, "why " * 80, "Return a list.", max_length=64, stride=16)
    windows = qa.make_windows(tokenizer, "why " * 25, "Return a list of the names. " * 10, max_length=64, stride=16)
    assert len(windows) > 1 and all(len(w["input_ids"]) <= 64 for w in windows)


def test_the_overlap_baseline_picks_the_sentence_sharing_most_words():
    """Catches: a baseline that reads the answer (it may only read the question and the context)."""
    context = "Open a file.\nReturn the number of bytes read. Raise OSError on failure."
    assert qa.overlap_baseline("What does f() return?", context) == "Return the number of bytes read."
    assert qa.overlap_baseline("What does f() return?", context, drop_verb=True) == "the number of bytes read"


def test_the_rule_baseline_is_the_sets_ceiling(qa_set):
    """Catches: a ceiling that is not the labelling rule (the offline set's answers are the rule's, so it must score
    100), and a rule that reads the answer rather than the context."""
    for split in ("train", "test"):
        answers = {r["id"]: qa.rule_baseline(r["question"], r["context"]) for r in qa_set[split]}
        assert qa.squad_scores(answers, qa_set[split]) == {"exact_match": 100.0, "f1": 100.0}
    assert qa.rule_baseline("What does f() return?", "Open a file.") == ""
    assert qa.rule_baseline("Which exception does f() raise?", "Return 1. Raises KeyError if absent.") == "KeyError"


def test_squad_from_the_hub_takes_the_same_path():
    """Catches: SQuAD's dev set not becoming the test split, the held-out validation overlapping train. A local data
    set of SQuAD's schema stands in for the download."""
    rows = [{"id": f"q{i}", "title": "T", "context": "Paris is in France.", "question": "Where is Paris?",
             "answers": {"text": ["France"], "answer_start": [12]}} for i in range(200)]
    raw = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows),
                                "validation": datasets.Dataset.from_list(rows[:5])})
    dataset = qa._squad(raw)
    assert set(dataset) == {"train", "validation", "test"} and len(dataset["test"]) == 5
    assert not set(dataset["train"]["id"]) & set(dataset["validation"]["id"])
    assert len(dataset["train"]) + len(dataset["validation"]) == 200 and len(dataset["validation"]) > 0
    qa.check_answers(dataset)
    with pytest.raises(Exception, match="python-docs-qa"):
        qa.load_qa("squad", verbose=False)


def test_windows_and_offsets_equal_transformers_overflowing_windows(tokenizer, qa_set, tmp_path):
    """Catches: windows that differ from transformers' (`truncation="only_second"`, `stride`,
    `return_overflowing_tokens`): a different room for the context, a stride counted as a step instead of an
    overlap, a last window placed differently, context offsets that differ from its offset mapping. Questions long
    enough for the stride to be capped (half a window) are left out: transformers refuses those."""
    import transformers

    tokenizer.save(tmp_path)
    reference = transformers.RobertaTokenizer.from_pretrained(str(tmp_path))
    compared = 0
    for row in qa_set["train"]:
        room = 64 - len(tokenizer.encode(row["question"], add_special_tokens=False)) - 4
        if room < 2 * 16:
            continue
        ours = qa.make_windows(tokenizer, row["question"], row["context"], max_length=64, stride=16)
        theirs = reference(row["question"], row["context"], truncation="only_second", max_length=64, stride=16,
                           return_overflowing_tokens=True, return_offsets_mapping=True)
        assert [w["input_ids"] for w in ours] == theirs["input_ids"], row["id"]
        for k, window in enumerate(ours):
            context = [tuple(o) for o, s in zip(theirs["offset_mapping"][k], theirs.sequence_ids(k)) if s == 1]
            assert window["offsets"][window["context_start"]:window["context_end"]] == context, row["id"]
        compared += 1
    assert compared > 100
