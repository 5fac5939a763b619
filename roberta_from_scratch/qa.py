"""Extractive question answering: answer spans found in a context (notebook 09, part 2).

The model reads ``<s> question </s></s> context </s>`` (RoBERTa's pair format) and scores every context token as
the answer's start and as its end (a linear layer on each token's vector: ``RobertaForQuestionAnswering``). The
answer is the span with the highest start score plus end score whose start comes first and which is not too long
(Devlin et al. 2019, arXiv 1810.04805, section 4.2; SQuAD: Rajpurkar et al. 2016, arXiv 1606.05250).

A context longer than the model's window is cut into overlapping windows (``stride`` tokens shared by neighbours,
so that an answer near a cut is whole in one of them); a window that does not hold the whole answer is trained to
point at ``<s>`` (position 0). Character offsets map the answer, given in characters, to token positions and the
predicted tokens back to text. The scores are SQuAD's exact match and word-overlap F1 after its answer
normalisation (lower case, no punctuation, no articles, single spaces), the best over the gold answers.

The offline data set, ``python-docs-qa``, is made by rule from the function docstrings of the pretraining corpus's
train split (data/README.md has its card): "Return(s) X." gives "What does f() return?" with answer X, and
"Raise(s) E" gives "Which exception does f() raise?" with answer E.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

import datasets

from .batching import collate
from .data import load_corpus, stable_hash
from .model import evaluating
from .tokenizer import PRETOKENIZE

OFFLINE_NAME = "python-docs-qa"
MAX_ANSWER_WORDS = 15


# ----------------------------------------------------------------------------------------------- the offline set

_RETURNS = re.compile(r"(?:^|(?<=[.!?]\s))Returns? (?P<answer>[^.;:\n]*?(?:\.(?=\w)[^.;:\n]*?)*)[.;]")
_RAISES = re.compile(r"\bRaises? (?P<answer>(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Warning)|StopIteration|"
                     r"KeyboardInterrupt|GeneratorExit|SystemExit)\b")


_ABBREVIATION = re.compile(r"\b(e\.g|i\.e|etc|cf|vs)$")


def _callable_name(source: str) -> str:
    """``package.module.Class.method`` -> ``Class.method()``; ``module.function`` -> ``module.function()``."""
    parts = source.split(".")
    tail = parts[-2:] if len(parts) > 1 else parts
    return ".".join(tail) + "()"


def _token_boundaries(text: str) -> set[int]:
    """Where a token of any byte-level BPE may start or end in ``text``: the pre-tokenizer's piece boundaries, and
    just after the space a piece starts with (a token's span leaves that space out)."""
    found = set()
    for match in PRETOKENIZE.finditer(text):
        found |= {match.start(), match.end()} | ({match.start() + 1} if match.group()[0] == " " else set())
    return found


def questions_for(text: str, source: str) -> list[dict]:
    """The rule's questions about one function docstring: what it returns (the first "Return(s) ..." sentence of
    2 to MAX_ANSWER_WORDS words) and which exception it raises (the first "Raise(s) E"). An answer must start and
    end where tokens can (not inside a run of punctuation such as ")." that BPE keeps in one piece), or no token
    span could equal it."""
    found = []
    name = _callable_name(source)
    match = _RETURNS.search(text)
    if match and 2 <= len(match.group("answer").split()) <= MAX_ANSWER_WORDS:
        found.append(("return", f"What does {name} return?", match))
    match = _RAISES.search(text)
    if match:
        found.append(("raise", f"Which exception does {name} raise?", match))
    boundaries = _token_boundaries(text) if found else set()
    questions = []
    for kind, question, m in found:
        answer = m.group("answer").rstrip()  # "... the SB ." leaves a space before the full stop
        start, end = m.start("answer"), m.start("answer") + len(answer)
        if _ABBREVIATION.search(answer):
            continue  # "Return a tuple, e.g." : the full stop of an abbreviation, not the sentence's end
        if {start, end} <= boundaries:
            questions.append({"id": f"{source}:{kind}", "question": question, "context": text,
                              "answers": {"text": [answer], "answer_start": [start]}})
    return questions


def qa_sources(corpus: datasets.DatasetDict) -> frozenset[str]:
    """The docstrings the question-answering set is made of (the tagging set leaves them out)."""
    return frozenset(source for text, source, kind in zip(corpus["train"]["text"], corpus["train"]["source"],
                                                          corpus["train"]["kind"])
                     if kind == "function" and questions_for(text, source))


def build_qa(corpus: datasets.DatasetDict) -> datasets.DatasetDict:
    """``python-docs-qa`` from a python-docs corpus: questions about the function docstrings of its train split,
    split 70/15/15 by a hash of the docstring (both questions about one docstring fall in one split)."""
    rows: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    for text, source, kind in zip(corpus["train"]["text"], corpus["train"]["source"], corpus["train"]["kind"]):
        if kind != "function":
            continue
        bucket = stable_hash(text, "qa") % 20
        rows["test" if bucket < 3 else "validation" if bucket < 6 else "train"] += questions_for(text, source)
    features = datasets.Features({
        "id": datasets.Value("string"), "question": datasets.Value("string"), "context": datasets.Value("string"),
        "answers": {"text": datasets.Sequence(datasets.Value("string")),
                    "answer_start": datasets.Sequence(datasets.Value("int32"))}})
    return datasets.DatasetDict({split: datasets.Dataset.from_list(part, features=features)
                                 for split, part in rows.items()})


def check_answers(dataset) -> None:
    """Every gold answer must be the context's text at its ``answer_start``: anything else fails here, naming the
    question, instead of training on a span that is not there."""
    for split, part in (dataset.items() if isinstance(dataset, datasets.DatasetDict) else [("data", dataset)]):
        for row in part:
            for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"]):
                found = row["context"][start:start + len(text)]
                if found != text:
                    raise ValueError(f"{split} question {row['id']!r}: the answer {text!r} is not the context's text "
                                     f"at character {start} (found {found!r}); answers must be substrings of "
                                     "their context, with answer_start their first character")


# ----------------------------------------------------------------------------------------------- SQuAD's scores

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, punctuation removed, the articles a/an/the removed, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    """Word-overlap F1 of the normalised answers (each word counted as often as it occurs in both)."""
    predicted, wanted = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((Counter(predicted) & Counter(wanted)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(wanted)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: dict[str, str], dataset) -> dict[str, float]:
    """Exact match and F1 in percent, each the best over a question's gold answers, averaged over questions."""
    missing = [row["id"] for row in dataset if row["id"] not in predictions]
    if missing:
        raise ValueError(f"{len(missing)} questions have no prediction (first: {missing[0]!r})")
    em = f1 = 0.0
    for row in dataset:
        golds = row["answers"]["text"]
        em += max(exact_match(predictions[row["id"]], gold) for gold in golds)
        f1 += max(f1_score(predictions[row["id"]], gold) for gold in golds)
    return {"exact_match": 100 * em / len(dataset), "f1": 100 * f1 / len(dataset)}


# ----------------------------------------------------------------------------------------------- windows and spans


def make_windows(tokenizer, question: str, context: str, max_length: int, stride: int) -> list[dict]:
    """``<s> question </s></s> window </s>`` for overlapping windows of the context's tokens. Each window has
    ``input_ids``, the character ``offsets`` of its tokens in the context ((0, 0) outside the context) and the
    position of its first context token, ``context_start``. Neighbouring windows share ``stride`` tokens (at most
    half a window, where a long question leaves little room)."""
    q_ids = tokenizer.encode(question, add_special_tokens=False)
    c_ids, c_offsets, _ = tokenizer.encode_with_offsets(context, add_special_tokens=False)
    room = max_length - len(q_ids) - 4  # <s> q </s></s> ... </s>
    if room < 2:
        raise ValueError(f"the question takes {len(q_ids)} of {max_length} tokens, leaving {max(room, 0)} for the "
                         "context: shorten the question or raise max_length")
    stride = min(stride, room // 2)  # a long question leaves a short window: windows must still move on
    head = [tokenizer.bos_token_id] + q_ids + [tokenizer.eos_token_id, tokenizer.eos_token_id]
    windows, begin = [], 0
    while True:
        part = slice(begin, begin + room)
        windows.append({"input_ids": head + c_ids[part] + [tokenizer.eos_token_id],
                        "offsets": [(0, 0)] * len(head) + c_offsets[part] + [(0, 0)],
                        "context_start": len(head), "context_end": len(head) + len(c_ids[part])})
        if begin + room >= len(c_ids):
            return windows
        begin += room - stride


def answer_positions(window: dict, start_char: int, end_char: int) -> tuple[int, int]:
    """The answer's first and last token in a window, or (0, 0), ``<s>``, when the window does not hold all of it.
    ``end_char`` is one past the answer's last character."""
    first = last = None
    for position in range(window["context_start"], window["context_end"]):
        start, end = window["offsets"][position]
        if first is None and end > start_char:
            first = position
        if start < end_char:
            last = position
    if first is None or last is None or window["offsets"][first][0] > start_char or \
            window["offsets"][last][1] < end_char:
        return 0, 0
    return first, last


def best_span(start_logits: Sequence[float], end_logits: Sequence[float], window: dict,
              max_answer_tokens: int = 30) -> tuple[float, int, int]:
    """The context span with the highest start + end score, start <= end, at most ``max_answer_tokens`` long."""
    best = (float("-inf"), 0, 0)
    for s in range(window["context_start"], window["context_end"]):
        for e in range(s, min(s + max_answer_tokens, window["context_end"])):
            score = float(start_logits[s]) + float(end_logits[e])
            if score > best[0]:
                best = (score, s, e)
    return best


def encode_qa(dataset, tokenizer, max_length: int, stride: int) -> list[dict]:
    """Training examples: every window of every question, with the answer's token positions (0, 0 where the
    window does not hold the whole answer). Only the first gold answer trains."""
    examples = []
    for row in dataset:
        start = row["answers"]["answer_start"][0]
        end = start + len(row["answers"]["text"][0])
        for window in make_windows(tokenizer, row["question"], row["context"], max_length, stride):
            first, last = answer_positions(window, start, end)
            examples.append({"input_ids": window["input_ids"], "start_positions": first, "end_positions": last})
    return examples


def predict_answers(model, tokenizer, dataset, max_length: int, stride: int, max_answer_tokens: int = 30,
                    batch_size: int = 64) -> dict[str, str]:
    """The model's answer to every question: the best span over all windows of its context, as text."""
    import torch

    windows = [(row["id"], row["context"], window) for row in dataset
               for window in make_windows(tokenizer, row["question"], row["context"], max_length, stride)]
    device = next(model.parameters()).device
    best: dict[str, tuple[float, str]] = {}
    with torch.no_grad(), evaluating(model):
        for i in range(0, len(windows), batch_size):
            part = windows[i:i + batch_size]
            batch = collate([{"input_ids": w["input_ids"]} for _, _, w in part], tokenizer.pad_token_id)
            out = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            for (question, context, window), starts, ends in zip(part, out.start_logits.float().cpu(),
                                                                  out.end_logits.float().cpu()):
                score, s, e = best_span(starts.tolist(), ends.tolist(), window, max_answer_tokens)
                text = context[window["offsets"][s][0]:window["offsets"][e][1]]
                if question not in best or score > best[question][0]:
                    best[question] = (score, text)
    return {question: text for question, (_, text) in best.items()}


# ----------------------------------------------------------------------------------------------- the baseline


_LEADING_VERB = re.compile(r"^\s*(?:Returns?|Raises?)\s+")


def overlap_baseline(question: str, context: str, drop_verb: bool = False) -> str:
    """The lexical baseline: the context's sentence (or line) sharing the most words with the question. With
    ``drop_verb``, the sentence without a leading "Return(s)" or "Raise(s)" and its closing punctuation: the answers
    of the offline set start after that word and end before the full stop, so the whole sentence could never match
    exactly."""
    wanted = set(normalize_answer(question).split())
    candidates = [s for s in re.split(r"(?<=[.!?;:])\s+|\n", context) if s.strip()]
    chosen = max(candidates, key=lambda s: len(wanted & set(normalize_answer(s).split())))
    return _LEADING_VERB.sub("", chosen).rstrip(" .;:") if drop_verb else chosen


def rule_baseline(question: str, context: str) -> str:
    """The labelling rule of the offline set read back as a reader (``questions_for``): the first "Return(s) ..."
    sentence's words, cut at ``.`` or ``;``, or the first "Raise(s) E"'s exception. The answers were made by this
    rule, so on that set it scores 100 by construction: the ceiling a model could reach by learning the rule. On
    another set (SQuAD) it answers nothing useful. An empty string where the rule finds nothing."""
    match = (_RAISES if question.startswith("Which exception") else _RETURNS).search(context)
    return match.group("answer").rstrip() if match else ""


# ----------------------------------------------------------------------------------------------- loading

HUB_QA = {
    "squad": ("rajpurkar/squad", None, "SQuAD v1.1 (Rajpurkar et al. 2016): 100k questions on Wikipedia paragraphs"),
}


def load_qa(name: str = OFFLINE_NAME, *, verbose: bool = True) -> datasets.DatasetDict:
    """A question-answering data set in SQuAD's schema (``id``, ``question``, ``context``, ``answers`` with ``text``
    and ``answer_start``): ``python-docs-qa`` (offline) or ``squad`` (from the Hub; its dev set is the test split)."""
    if name == OFFLINE_NAME:
        dataset = build_qa(load_corpus(verbose=False))
    elif name in HUB_QA:
        from .data import HubSource, load_hub

        path, config, about = HUB_QA[name]
        # text_column "text": nothing to rename (SQuAD's columns are the course's schema already)
        dataset = load_hub(name, HubSource(path, config, "text", ("train", "validation"), about, _squad),
                            repr(OFFLINE_NAME))
    else:
        raise ValueError(f"unknown question-answering data set {name!r}; choose {OFFLINE_NAME!r} or one of "
                         f"{list(HUB_QA)}")
    check_answers(dataset)
    if verbose:
        sizes = ", ".join(f"{split} {len(part):,}" for split, part in dataset.items())
        print(f"{name}: {sizes} questions")
    return dataset


def _squad(raw: datasets.DatasetDict) -> datasets.DatasetDict:
    """SQuAD's dev set (the test set is hidden) becomes the test split; 5% of train by hash becomes validation."""
    columns = ["id", "question", "context", "answers"]
    train = raw["train"].select_columns(columns)
    held = [stable_hash(i, "squad") % 20 == 0 for i in train["id"]]
    return datasets.DatasetDict({
        "train": train.select([i for i, h in enumerate(held) if not h]),
        "validation": train.select([i for i, h in enumerate(held) if h]),
        "test": raw["validation"].select_columns(columns)})
