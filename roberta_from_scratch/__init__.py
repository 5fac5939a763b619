"""roberta-from-scratch: RoBERTa built step by step, in plain PyTorch, each piece checked against the reference.

The package mirrors the course: each top-level module holds what one notebook builds (the lessons, on a few
foundations: config, files, settings, data, hub), so later notebooks import it instead of repeating it. Three wings
hold the rest: ``course/`` (the course's cached artifacts, experiments and notebooks), ``classroom/`` (exercises and
the grader) and ``commands/`` (the command lines, ``python -m roberta_from_scratch <command>``). Names are imported on first use, so ``import roberta_from_scratch.model`` does not load
the data libraries.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "OfflineError": "hub",
    "corpus_statistics": "data",
    "load_classification": "data",
    "load_corpus": "data",
    "pack_dataset": "packing",
    "course_tokenizer": "course.artifacts",
    "course_pretrained_model": "course.reference",
    "describe_environment": "settings",
    "get_scale": "settings",
    "pick_device": "settings",
    "pick_precision": "settings",
    "ByteLevelBPETokenizer": "tokenizer",
    "MultiHeadSelfAttention": "attention",
    "RobertaConfig": "config",
    "RobertaModel": "model",
    "RobertaForMaskedLM": "model",
    "RobertaForSequenceClassification": "model",
    "RobertaForTokenClassification": "model",
    "RobertaForQuestionAnswering": "model",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'roberta_from_scratch' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])
