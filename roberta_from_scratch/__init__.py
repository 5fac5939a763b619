"""roberta-from-scratch: RoBERTa built step by step, in plain PyTorch, each piece checked against the reference.

The package mirrors the course: each module holds what one notebook builds, so later notebooks import it
instead of repeating it.
"""

from .data import OfflineError, corpus_statistics, load_classification, load_corpus
from .settings import describe_environment, get_scale, pick_device, pick_precision

__version__ = "0.1.0"

__all__ = [
    "OfflineError",
    "corpus_statistics",
    "describe_environment",
    "get_scale",
    "load_classification",
    "load_corpus",
    "pick_device",
    "pick_precision",
]
