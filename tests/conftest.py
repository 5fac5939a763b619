"""Shared test set-up: no network, the smoke scale, a non-interactive plotting backend, a temporary data folder."""

import os
import tempfile

# Tests write only under temporary folders, never into the checkout's data/: unless the caller chose a data
# directory, every cache and artifact of this run (and of the kernels the grading tests start, which inherit RFS_*
# variables) goes to a fresh one, removed at the end.
_OWN_DATA_DIR = None if os.environ.get("RFS_DATA_DIR") else tempfile.mkdtemp(prefix="rfs-test-data-")
if _OWN_DATA_DIR:
    os.environ["RFS_DATA_DIR"] = _OWN_DATA_DIR

# Set before anything imports datasets or huggingface_hub, which read these once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("RFS_SCALE", "smoke")
os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def python_docs_dir(tmp_path_factory):
    """A fresh data directory, into which ``python_docs`` builds (and caches) the corpus."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def python_docs(python_docs_dir):
    """The python-docs corpus and labelled set, built once from scratch into a fresh data directory (the first
    call builds and writes the cache and returns what it built)."""
    from roberta_from_scratch import data

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(data.DATA_DIR_ENV, str(python_docs_dir))
        corpus = data.load_corpus(verbose=False)
        topics = data.load_classification(verbose=False)
    return corpus, topics


@pytest.fixture(scope="session")
def small_tokenizer(python_docs):
    """A 600-token BPE on the first 800 training documents, trained once: enough pieces for the tagging and
    question-answering tests, small enough that words split into several."""
    from roberta_from_scratch.tokenizer import ByteLevelBPETokenizer

    corpus, _ = python_docs
    return ByteLevelBPETokenizer.train(list(corpus["train"]["text"])[:800], vocab_size=600)


# A skip hides a test. The only accepted reasons are optional system tools (Chromium and bertviz's scripts for the
# browser test, bubblewrap for the grader's confinement tests); any other skip
# (a declared dependency that fails to import, a fixture that gave up) fails the run, and every reason is printed.
ALLOWED_SKIPS = ("no Chromium", "no bertviz JavaScript libraries", "cannot confine: bubblewrap")
_unexpected_skips: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not any(allowed in reason for allowed in ALLOWED_SKIPS):
            _unexpected_skips.append(f"{report.nodeid}: {reason}")


def pytest_terminal_summary(terminalreporter):
    if _unexpected_skips:
        terminalreporter.write_line("skipped for a reason other than an absent optional system tool (a failure):")
        for line in _unexpected_skips:
            terminalreporter.write_line(f"  {line}")


def pytest_sessionfinish(session, exitstatus):
    if _unexpected_skips and exitstatus == 0:
        session.exitstatus = 1
    if _OWN_DATA_DIR:
        import shutil

        shutil.rmtree(_OWN_DATA_DIR, ignore_errors=True)
