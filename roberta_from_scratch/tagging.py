"""Tagging tokens: named entities in BIO tags, aligned to byte-level BPE pieces (notebook 09, part 1).

A tagger labels every *word*; the model sees *pieces*. The words here are the pre-tokenizer's pieces of the text
(GPT-2's regular expression, the first step of byte-level BPE), each remembered with whether a space came before
it, so that encoding the words one by one gives exactly the tokens of the whole sentence: a word's pieces never
straddle two words. The first piece of each word carries the word's tag; the others carry the ignore index
(-100), so the loss and the predictions are per word, as in BERT's NER experiments (Devlin et al. 2019, arXiv
1810.04805, section 5.3).

Entities are spans of words tagged ``B-TYPE`` (begin) then ``I-TYPE`` (inside); ``O`` is outside any entity. The
score is entity-level precision, recall and F1 (Tjong Kim Sang & De Meulder 2003, CoNLL-2003's scorer): an entity
counts only if its type and both its ends are right. :func:`entities` reads tags as conlleval does (an ``I-`` tag
after ``O`` or after another type starts an entity), which is also seqeval's default mode.

The offline data set, ``python-docs-entities``, is labelled by rule from the docstrings of the pretraining corpus's
train split (data/README.md has its card):

- ``EXC``: an exception or warning class, a (dotted) name whose last part ends in Error, Exception or Warning, or is
  a built-in exception (StopIteration, KeyboardInterrupt, ...);
- ``FUNC``: a (dotted) name written directly before an opening parenthesis, a call or a cited callable;
- ``MOD``: a standard-library module, written dotted (``os.path``), after ``import`` or ``from``, or before the word
  "module" or "package".
"""

from __future__ import annotations

import builtins
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence

import datasets

from .batching import collate
from .config import IGNORE_INDEX
from .data import load_classification, load_corpus, stable_hash
from .model import evaluating
from .packing import split_sentences  # the course's one sentence splitter
from .tokenizer import PRETOKENIZE

ENTITY_TYPES = ("EXC", "FUNC", "MOD")
LABELS = ("O",) + tuple(f"{prefix}-{kind}" for kind in ENTITY_TYPES for prefix in ("B", "I"))
OFFLINE_NAME = "python-docs-entities"


# ----------------------------------------------------------------------------------------------- words and tags


def split_words(text: str) -> tuple[list[str], list[bool], list[tuple[int, int]]]:
    """The pre-tokenizer's pieces of ``text`` as words: each word, whether a space came before it, and its span.
    Runs of white space are not words (they only set the next word's flag)."""
    words, spaces, spans = [], [], []
    for match in PRETOKENIZE.finditer(text):
        piece = match.group()
        if not piece.strip():
            continue
        lead = len(piece) - len(piece.lstrip())
        words.append(piece[lead:])
        spaces.append(lead > 0 or (match.start() > 0 and text[match.start() - 1].isspace()))
        spans.append((match.start() + lead, match.end()))
    return words, spaces, spans


def entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The entities in a BIO tag sequence, as (type, first word, last word + 1), read as conlleval reads them: a
    ``B-`` tag, or an ``I-`` tag that does not continue an entity of its type, starts one."""
    found, kind, start = [], None, 0
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, tag_kind = tag.partition("-")
        if kind is not None and (prefix != "I" or tag_kind != kind):
            found.append((kind, start, i))
            kind = None
        if prefix in ("B", "I") and kind is None:
            kind, start = tag_kind, i
    return found


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level precision, recall and F1 over many sentences (micro-averaged), and F1 per entity type."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted ones")
    right, guessed, wanted = Counter(), Counter(), Counter()
    for sentence, (gold_tags, predicted_tags) in enumerate(zip(gold, predicted)):
        if len(gold_tags) != len(predicted_tags):
            raise ValueError(f"sentence {sentence}: {len(gold_tags)} gold tags but {len(predicted_tags)} predicted")
        true, guess = set(entities(gold_tags)), set(entities(predicted_tags))
        for kind, *_ in true:
            wanted[kind] += 1
        for kind, *_ in guess:
            guessed[kind] += 1
        for kind, *_ in true & guess:
            right[kind] += 1

    def prf(r: int, g: int, w: int) -> tuple[float, float, float]:
        p, q = (r / g if g else 0.0), (r / w if w else 0.0)
        return p, q, (2 * p * q / (p + q) if p + q else 0.0)

    precision, recall, f1 = prf(sum(right.values()), sum(guessed.values()), sum(wanted.values()))
    scores = {"precision": precision, "recall": recall, "f1": f1}
    for kind in sorted(set(wanted) | set(guessed)):
        scores[f"f1 {kind}"] = prf(right[kind], guessed[kind], wanted[kind])[2]
    return scores


# ----------------------------------------------------------------------------------------------- pieces


def encode_words(tokenizer, words: Sequence[str], spaces: Sequence[bool] | None = None
                 ) -> tuple[list[int], list[int | None]]:
    """Token ids for a sentence given as words (``<s>`` and ``</s>`` around them), and for each id the index of
    the word it came from (None for the special tokens). A word is encoded with a leading space where ``spaces``
    says one came before it; without ``spaces`` every word gets one (words of a data set such as CoNLL-2003,
    split on white space)."""
    if spaces is None:
        spaces = [True] * len(words)
    ids, word_ids = [tokenizer.bos_token_id], [None]
    for index, (word, space) in enumerate(zip(words, spaces)):
        pieces = tokenizer.encode((" " if space else "") + word, add_special_tokens=False)
        ids += pieces
        word_ids += [index] * len(pieces)
    return ids + [tokenizer.eos_token_id], word_ids + [None]


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """One label per token: the word's label on its first piece, the ignore index on its other pieces and on the
    special tokens."""
    labels, previous = [], None
    for word in word_ids:
        labels.append(IGNORE_INDEX if word is None or word == previous else word_labels[word])
        previous = word
    return labels


def word_predictions(word_ids: Sequence[int | None], token_predictions: Sequence[int], num_words: int,
                     outside: int = 0) -> list[int]:
    """Back from tokens to words: each word takes the prediction at its first piece; a word cut off by truncation
    gets ``outside`` (the O label)."""
    found = [outside] * num_words
    seen = set()
    for word, prediction in zip(word_ids, token_predictions):
        if word is not None and word not in seen:
            seen.add(word)
            found[word] = int(prediction)
    return found


def encode_tagging(dataset, tokenizer, max_length: int) -> list[dict]:
    """Encode a data set with ``tokens`` and ``ner_tags`` columns (and ``spaces`` where it has one) into model
    inputs: ``input_ids``, per-token ``labels``, and the ``word_ids`` to read predictions back per word. Sentences
    longer than ``max_length`` tokens are cut (their last words then count as predicted O)."""
    examples = []
    has_spaces = "spaces" in dataset.column_names
    for row in dataset:
        ids, word_ids = encode_words(tokenizer, row["tokens"], row["spaces"] if has_spaces else None)
        if len(ids) > max_length:
            ids, word_ids = ids[: max_length - 1] + [tokenizer.eos_token_id], word_ids[: max_length - 1] + [None]
        examples.append({"input_ids": ids, "labels": align_labels(word_ids, row["ner_tags"]), "word_ids": word_ids,
                         "num_words": len(row["tokens"])})
    return examples


def predict_tags(model, examples: list[dict], pad_token_id: int, batch_size: int = 64) -> list[list[int]]:
    """The model's tag (an index into the labels) for every word of every encoded example, in order."""
    import torch

    device = next(model.parameters()).device
    found = []
    with torch.no_grad(), evaluating(model):
        for i in range(0, len(examples), batch_size):
            part = examples[i:i + batch_size]
            batch = collate(part, pad_token_id)
            logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device)).logits
            for example, row in zip(part, logits.argmax(-1).cpu().tolist()):
                found.append(word_predictions(example["word_ids"], row, example["num_words"]))
    return found


def tag_scores(model, examples: list[dict], gold: Sequence[Sequence[int]], names: Sequence[str],
               pad_token_id: int) -> dict[str, float]:
    """Entity-level scores of the model on encoded examples against their gold tags (indices into ``names``)."""
    predicted = predict_tags(model, examples, pad_token_id)
    return entity_scores([[names[t] for t in tags] for tags in gold],
                         [[names[t] for t in tags] for tags in predicted])


def check_tags(dataset, num_labels: int) -> None:
    """Labels outside [0, num_labels) fail here, naming the sentence, not later as a CUDA assert."""
    for split, part in (dataset.items() if isinstance(dataset, datasets.DatasetDict) else [("data", dataset)]):
        for index, row in enumerate(part):
            if len(row["tokens"]) != len(row["ner_tags"]):
                raise ValueError(f"{split} sentence {index}: {len(row['tokens'])} words but {len(row['ner_tags'])} "
                                 "tags; give one tag per word")
            bad = [tag for tag in row["ner_tags"] if not 0 <= tag < num_labels]
            if bad:
                raise ValueError(f"{split} sentence {index}: tag {bad[0]} is outside [0, {num_labels}); the labels "
                                 f"are {num_labels} names, so tags must be their indices")


# ----------------------------------------------------------------------------------------------- the offline set

_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_EXCEPTION_SUFFIX = re.compile(r"^[A-Z]\w*(Error|Exception|Warning)$")
_BUILTIN_EXCEPTIONS = frozenset(
    name for name in dir(builtins)
    if isinstance(getattr(builtins, name), type) and issubclass(getattr(builtins, name), BaseException)
) - {"Warning", "Exception", "BaseException"}  # the bare words are mostly prose ("Warning: ...")
_AFTER_MODULE = re.compile(r"\s+(module|package)\b")
_BEFORE_MODULE = re.compile(r"\b(import|from)\s+$")


def _entity_spans(text: str, modules: frozenset[str]) -> list[tuple[str, int, int]]:
    """The rule's entities in a text, as (type, start char, end char), for maximal dotted names."""
    spans = []
    for match in _NAME.finditer(text):
        name, start, end = match.group(), match.start(), match.end()
        if start and (text[start - 1].isalnum() or text[start - 1] in "_."):
            continue  # inside a longer token (e.g. after a digit): not a name of its own
        last = name.rsplit(".", 1)[-1]
        if _EXCEPTION_SUFFIX.match(last) or last in _BUILTIN_EXCEPTIONS:
            spans.append(("EXC", start, end))
        elif text.startswith("(", end):
            spans.append(("FUNC", start, end))
        elif name in modules and ("." in name or _AFTER_MODULE.match(text, end)
                                  or _BEFORE_MODULE.search(text, 0, start)):
            spans.append(("MOD", start, end))
    return spans


def tag_sentence(text: str, modules: frozenset[str]) -> dict:
    """Words, spaces and BIO tags of one sentence under the labelling rule. A word belongs to an entity when its
    first character lies inside the entity's span."""
    words, spaces, word_spans = split_words(text)
    tags = ["O"] * len(words)
    for kind, start, end in _entity_spans(text, modules):
        inside = [i for i, (word_start, _) in enumerate(word_spans) if start <= word_start < end]
        for rank, i in enumerate(inside):
            tags[i] = f"{'B' if rank == 0 else 'I'}-{kind}"
    return {"tokens": words, "spaces": spaces, "ner_tags": [LABELS.index(tag) for tag in tags]}


MIN_WORDS, MAX_WORDS = 4, 40
EMPTY_KEEP = 4  # one sentence in EMPTY_KEEP without any entity is kept, so that O is not all the model learns



def standard_modules(corpus: datasets.DatasetDict) -> frozenset[str]:
    """The standard library's modules: this Python's top-level names and the dotted modules the corpus documents."""
    documented = {source for part in corpus.values() for source, kind in zip(part["source"], part["kind"])
                  if kind == "module"}
    return frozenset(sys.stdlib_module_names) | frozenset(documented)


def build_entities(corpus: datasets.DatasetDict, exclude_sources: frozenset[str] = frozenset(),
                   exclude_texts: Iterable[str] = ()) -> datasets.DatasetDict:
    """``python-docs-entities`` from a python-docs corpus: the sentences of its train split's docstrings (those of
    ``exclude_sources`` left out: the question-answering set's), tagged by the rule, split 70/15/15 by a hash of the
    docstring (all sentences of one docstring fall in one split). A sentence is kept once (boilerplate such as
    "Return the value." recurs across docstrings), and never when it also occurs in the corpus's validation split
    or in ``exclude_texts`` (the topics set's docstrings)."""
    modules = standard_modules(corpus)
    seen = {s for text in [*corpus["validation"]["text"], *exclude_texts] for s in split_sentences(text)}
    rows: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    for text, source in zip(corpus["train"]["text"], corpus["train"]["source"]):
        if source in exclude_sources:
            continue
        bucket = stable_hash(text, "entities") % 20
        split = "test" if bucket < 3 else "validation" if bucket < 6 else "train"
        for sentence in split_sentences(text):
            if sentence in seen:
                continue
            seen.add(sentence)
            row = tag_sentence(sentence, modules)
            if not MIN_WORDS <= len(row["tokens"]) <= MAX_WORDS:
                continue
            if not any(row["ner_tags"]) and stable_hash(sentence, "empty") % EMPTY_KEEP:
                continue
            rows[split].append({**row, "text": sentence, "source": source})
    features = datasets.Features({
        "tokens": datasets.Sequence(datasets.Value("string")), "spaces": datasets.Sequence(datasets.Value("bool")),
        "ner_tags": datasets.Sequence(datasets.ClassLabel(names=list(LABELS))), "text": datasets.Value("string"),
        "source": datasets.Value("string")})
    return datasets.DatasetDict({split: datasets.Dataset.from_list(part, features=features)
                                 for split, part in rows.items()})


def label_names(dataset: datasets.DatasetDict) -> list[str]:
    """The tag names of a data set whose ``ner_tags`` column holds class labels."""
    feature = next(iter(dataset.values())).features["ner_tags"]
    return list(feature.feature.names)


# ----------------------------------------------------------------------------------------------- the baseline


class LookupTagger:
    """The dictionary baseline (a gazetteer): the entities of the training sentences, as word sequences, each with
    the type it carried most often; kept only where the sequence was an entity at least as often as it was not.
    Tagging marks the longest known sequence at each position, left to right. It knows every entity it saw and
    nothing about context, nor about names it never saw."""

    def __init__(self, sentences: Iterable[tuple[Sequence[str], Sequence[str]]], max_words: int = 12):
        sentences = [(list(words), list(tags)) for words, tags in sentences]
        kinds: dict[tuple[str, ...], Counter] = {}
        for words, tags in sentences:
            for kind, start, end in entities(tags):
                if end - start <= max_words:
                    kinds.setdefault(tuple(words[start:end]), Counter())[kind] += 1
        occurrences = Counter()  # how often each known sequence occurs at all, entity or not
        for words, _ in sentences:
            for start in range(len(words)):
                for end in range(start + 1, min(len(words), start + max_words) + 1):
                    if tuple(words[start:end]) in kinds:
                        occurrences[tuple(words[start:end])] += 1
        self.known = {words: c.most_common(1)[0][0] for words, c in kinds.items()
                      if 2 * sum(c.values()) >= occurrences[words]}
        self.max_words = max_words

    def __call__(self, words: Sequence[str]) -> list[str]:
        tags, i = ["O"] * len(words), 0
        while i < len(words):
            for end in range(min(len(words), i + self.max_words), i, -1):
                kind = self.known.get(tuple(words[i:end]))
                if kind is not None:
                    tags[i:end] = [f"B-{kind}"] + [f"I-{kind}"] * (end - i - 1)
                    i = end
                    break
            else:
                i += 1
        return tags


# ----------------------------------------------------------------------------------------------- loading

HUB_TAGGING = {  # name -> (Hub path, config, about)
    "conll2003": ("lhoestq/conll2003", None, "CoNLL-2003 English NER (Tjong Kim Sang & De Meulder 2003): PER, ORG, "
                  "LOC, MISC in Reuters news"),
}
CONLL_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")


def normalize_conll(raw: datasets.DatasetDict) -> datasets.DatasetDict:
    """CoNLL-2003 in the course's schema: ``tokens`` and ``ner_tags`` as class labels (the Hub's parquet copies
    store the tags as plain integers in the order of ``CONLL_LABELS``)."""
    out = {}
    for split, part in raw.items():
        part = part.select_columns(["tokens", "ner_tags"])
        if not isinstance(getattr(part.features["ner_tags"], "feature", None), datasets.ClassLabel):
            part = part.cast_column("ner_tags", datasets.Sequence(datasets.ClassLabel(names=list(CONLL_LABELS))))
        out[split] = part.filter(lambda row: len(row["tokens"]) > 0)  # the document separators are empty rows
    return datasets.DatasetDict(out)


def load_tagging(name: str = OFFLINE_NAME, *, verbose: bool = True) -> datasets.DatasetDict:
    """A tagging data set with ``tokens`` and ``ner_tags`` (class labels) in train, validation and test:
    ``python-docs-entities`` (offline, built from the python-docs corpus) or ``conll2003`` (from the Hub)."""
    if name == OFFLINE_NAME:
        from .qa import qa_sources

        corpus = load_corpus(verbose=False)
        topics = load_classification(verbose=False)
        dataset = build_entities(corpus, exclude_sources=qa_sources(corpus),
                                 exclude_texts=[t for part in topics.values() for t in part["text"]])
    elif name in HUB_TAGGING:
        from .data import load_hub

        path, config, about = HUB_TAGGING[name]
        dataset = load_hub(name, _hub_source(path, config, about), repr(OFFLINE_NAME))
    else:
        raise ValueError(f"unknown tagging data set {name!r}; choose {OFFLINE_NAME!r} or one of {list(HUB_TAGGING)}")
    check_tags(dataset, len(label_names(dataset)))
    if verbose:
        sizes = ", ".join(f"{split} {len(part):,}" for split, part in dataset.items())
        print(f"{name}: {sizes} sentences; tags {', '.join(label_names(dataset))}")
    return dataset


def _hub_source(path: str, config: str | None, about: str):
    from .data import HubSource

    # text_column "text": no column to rename (CoNLL has words, not texts); normalize_conll does the rest
    return HubSource(path, config, "text", ("train", "validation", "test"), about, normalize_conll)
