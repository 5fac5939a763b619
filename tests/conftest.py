"""Shared test set-up: no network, the smoke scale, a non-interactive plotting backend."""

import os

# Set before anything imports datasets or huggingface_hub, which read these once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("RFS_SCALE", "smoke")
os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def python_docs(tmp_path_factory):
    """The python-docs corpus and labelled set, built once from scratch into a fresh data directory."""
    from roberta_from_scratch import data

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(data.DATA_DIR_ENV, str(tmp_path_factory.mktemp("data")))
        corpus = data.load_corpus(verbose=False)
        topics = data.load_classification(verbose=False)
    return corpus, topics
