"""Corpora and labelled sets, offline first.

The default corpus, ``python-docs``, is real English prose that every Python installation carries: the docstrings
of the standard library (read from the source files with :mod:`ast`, nothing is imported) and the help topics of
:mod:`pydoc_data.topics`. It is cleaned, deduplicated, split by a stable hash of each text and cached under
``data/cache``. From the same source comes a labelled set, ``python-docs-topics``: docstrings labelled with the
library area their module belongs to. Its texts are held out of the pretraining corpus, so finetuning never sees a
text that pretraining trained on.

Hub corpora (WikiText-103, TinyStories) and tasks (SST-2) load through :func:`datasets.load_dataset` when the Hub
can be reached; offline, asking for one fails at once with one line that names the offline default.

Everything returns a :class:`datasets.DatasetDict` with a ``text`` column.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets

from . import hub
from .hub import OfflineError  # noqa: F401  (re-exported: the error load_corpus raises offline)

DATA_VERSION = 2  # bump when the way the python-docs corpus is built changes; old caches are then ignored
DATA_DIR_ENV = "RFS_DATA_DIR"

VALIDATION_PER_MILLE = 50  # 5% of the pretraining corpus is held out for validation
MIN_CHARS, MIN_WORDS = 40, 6  # shorter docstrings ("Return self.") carry no prose

# Library areas of the labelled set: top-level standard-library modules per area.
TOPIC_AREAS: dict[str, tuple[str, ...]] = {
    "text processing": (
        "string re difflib textwrap unicodedata stringprep codecs locale gettext shlex sre_compile sre_parse "
        "sre_constants _strptime encodings"
    ).split(),
    "files and storage": (
        "pathlib os posixpath ntpath genericpath fileinput stat filecmp tempfile glob fnmatch shutil zipfile "
        "tarfile gzip bz2 lzma zipimport mailbox dbm shelve"
    ).split(),
    "networking and web": (
        "socket ssl selectors http urllib email smtplib poplib imaplib ftplib xmlrpc socketserver ipaddress "
        "mimetypes wsgiref nntplib telnetlib webbrowser"
    ).split(),
    "concurrency": "threading multiprocessing concurrent subprocess sched queue asyncio _threading_local".split(),
    "data formats": (
        "json csv configparser tomllib plistlib xml pickle pickletools copyreg marshal base64 binascii quopri uu "
        "html sqlite3 netrc"
    ).split(),
    "numbers and math": "math cmath decimal _pydecimal fractions numbers random statistics".split(),
    "development tools": "unittest doctest pdb bdb trace traceback cProfile profile pstats timeit inspect dis "
    "tracemalloc pydoc".split(),
}
TOPIC_LABELS = tuple(TOPIC_AREAS)
TOPIC_CLASS_CAP = 170  # at most this many examples per class, and at most half of a class's docstrings
_MODULE_AREA = {module: area for area, modules in TOPIC_AREAS.items() for module in modules}
_SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages", "dist-packages", "ensurepip",
              "tkinter", "pydoc_data", "venv", "__pycache__", "__phello__"}


# --------------------------------------------------------------------------------------------------- locations


def data_dir() -> Path:
    """Where data is cached: ``$RFS_DATA_DIR``, else ``data/`` of a source checkout, else the user's cache."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "data").is_dir():
        return checkout / "data"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "roberta-from-scratch"


# --------------------------------------------------------------------------------------- the python-docs source


def _clean(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def same_text_key(text: str) -> str:
    """Texts that differ only in white space are the same document."""
    return " ".join(text.split())


def stable_hash(text: str, salt: str = "") -> int:
    """A hash of the text that is the same on every machine and every run (unlike ``hash()``)."""
    return int.from_bytes(hashlib.sha256((salt + same_text_key(text)).encode("utf-8")).digest()[:8], "big")


def _docstrings(tree: ast.Module, prefix: str) -> Iterator[tuple[str, str, str]]:
    """(text, qualified name, kind) for the module and every class and function inside it."""
    doc = ast.get_docstring(tree)
    if doc:
        yield doc, prefix, "module"
    stack = [(node, prefix) for node in tree.body]
    while stack:
        node, parent = stack.pop(0)
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            name = f"{parent}.{node.name}"
            doc = ast.get_docstring(node)
            if doc:
                yield doc, name, "class" if isinstance(node, ast.ClassDef) else "function"
            stack[0:0] = [(child, name) for child in node.body]
        elif isinstance(node, (ast.If, ast.Try)):  # definitions inside `if sys.platform ...:` or `try:` blocks
            stack[0:0] = [(child, parent) for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt)]


def _stdlib_documents() -> list[dict[str, str]]:
    """Every docstring of the pure-Python standard library and every pydoc help topic, in a fixed order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    found: list[dict[str, str]] = []
    for folder, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in _SKIP_DIRS and not d.startswith(("test", "config-")))
        for filename in sorted(files):
            if not filename.endswith(".py"):
                continue
            path = Path(folder) / filename
            parts = path.relative_to(root).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            try:
                tree = ast.parse(path.read_bytes(), filename=str(path))
            except (SyntaxError, ValueError, OSError):
                continue  # a file this Python cannot parse carries nothing we need
            for text, name, kind in _docstrings(tree, module):
                found.append({"text": text, "source": name, "kind": kind})
    from pydoc_data.topics import topics

    for topic in sorted(topics):
        found.append({"text": topics[topic], "source": f"pydoc_data.topics[{topic!r}]", "kind": "topic"})
    return found


def module_area(source: str, kind: str) -> str | None:
    return None if kind == "topic" else _MODULE_AREA.get(source.split(".")[0])


def build_python_docs() -> tuple[datasets.DatasetDict, datasets.DatasetDict]:
    """Build the ``python-docs`` corpus and the ``python-docs-topics`` labelled set from this Python's sources.

    1. Clean every text (trailing spaces, runs of blank lines), drop short ones, keep the first of duplicates.
    2. Labelled set: for each library area, the docstrings with the lowest hashes, up to ``TOPIC_CLASS_CAP`` and
       at most half of the area's docstrings, are held out of the corpus; each area is split 80/10/10 by a second
       hash, so every split has the classes in the same proportions.
    3. Corpus: the rest, split 95/5 into train and validation by hash.
    """
    seen: set[str] = set()
    documents = []
    for doc in _stdlib_documents():
        text = _clean(doc["text"])
        key = same_text_key(text)
        if len(text) < MIN_CHARS or len(text.split()) < MIN_WORDS or key in seen:
            continue
        seen.add(key)
        documents.append({**doc, "text": text})

    by_area: dict[str, list[dict[str, str]]] = {area: [] for area in TOPIC_LABELS}
    for doc in documents:
        area = module_area(doc["source"], doc["kind"])
        if area is not None:
            by_area[area].append(doc)
    held_out: dict[str, tuple[str, str]] = {}  # key -> (area, split)
    for area, docs in by_area.items():
        docs.sort(key=lambda d: stable_hash(d["text"], "topics"))
        chosen = docs[: min(TOPIC_CLASS_CAP, len(docs) // 2)]
        chosen.sort(key=lambda d: stable_hash(d["text"], "topic-split"))
        tenth = round(len(chosen) / 10)  # stratified: every split has the classes in the same proportions
        for rank, doc in enumerate(chosen):
            split = "test" if rank < tenth else "validation" if rank < 2 * tenth else "train"
            held_out[same_text_key(doc["text"])] = (area, split)

    corpus: dict[str, list[dict[str, str]]] = {"train": [], "validation": []}
    labelled: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    for doc in documents:
        if same_text_key(doc["text"]) not in held_out:
            split = "validation" if stable_hash(doc["text"], "split") % 1000 < VALIDATION_PER_MILLE else "train"
            corpus[split].append(doc)
        else:
            area, split = held_out[same_text_key(doc["text"])]
            labelled[split].append({"text": doc["text"], "label": TOPIC_LABELS.index(area), "source": doc["source"]})

    corpus_features = datasets.Features({name: datasets.Value("string") for name in ("text", "source", "kind")})
    topic_features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=list(TOPIC_LABELS)),
         "source": datasets.Value("string")}
    )

    def to_dataset(rows: list[dict], features: datasets.Features) -> datasets.Dataset:
        return datasets.Dataset.from_dict({k: [row[k] for row in rows] for k in features}, features=features)

    return (
        datasets.DatasetDict({split: to_dataset(rows, corpus_features) for split, rows in corpus.items()}),
        datasets.DatasetDict({split: to_dataset(rows, topic_features) for split, rows in labelled.items()}),
    )


def _python_docs_cache() -> Path:
    version = ".".join(map(str, sys.version_info[:3]))
    return data_dir() / "cache" / f"python-docs-py{version}-v{DATA_VERSION}"


class quiet_datasets:
    """Hide the progress bars of ``datasets`` while the cache is written or read (they are noise here)."""

    def __enter__(self):
        self.was_enabled = datasets.utils.logging.is_progress_bar_enabled()
        datasets.disable_progress_bars()

    def __exit__(self, *exc):
        if self.was_enabled:
            datasets.enable_progress_bars()


def _load_python_docs(part: str, rebuild: bool = False) -> datasets.DatasetDict:
    cache = _python_docs_cache()
    with quiet_datasets():
        if rebuild or not (cache / "done").is_file():
            corpus, topics = build_python_docs()
            cache.parent.mkdir(parents=True, exist_ok=True)
            # Write beside the cache, then rename: a run killed half-way never leaves a half-written cache.
            tmp = Path(tempfile.mkdtemp(prefix=cache.name + ".", dir=cache.parent))
            corpus.save_to_disk(str(tmp / "corpus"))
            topics.save_to_disk(str(tmp / "topics"))
            (tmp / "done").write_text("complete\n")
            if cache.exists():
                shutil.rmtree(cache, ignore_errors=True)
            try:
                tmp.rename(cache)
            except OSError:  # another process finished first; its copy is identical
                shutil.rmtree(tmp, ignore_errors=True)
            return corpus if part == "corpus" else topics
        return datasets.load_from_disk(str(cache / part))


# --------------------------------------------------------------------------------------------------- the Hub


@dataclass(frozen=True)
class HubSource:
    """Where a named data set lives on the Hub and how its columns map to ours."""

    path: str
    config: str | None
    text_column: str
    splits: tuple[str, ...]
    about: str
    postprocess: Callable[[datasets.DatasetDict], datasets.DatasetDict] | None = None


_WIKITEXT_TITLE = re.compile(r"^ = [^=].* = $")


def group_wikitext_articles(dataset: datasets.Dataset, batch_size: int = 10_000) -> datasets.Dataset:
    """WikiText stores one paragraph per row; rebuild articles, which start at a top-level ``= Title =`` line.

    Document boundaries matter to FULL-SENTENCES packing (an extra separator between documents), so the corpus
    keeps articles whole, one per row, with their paragraphs on separate lines.
    """
    articles: list[str] = []
    current: list[str] = []
    for batch in dataset.iter(batch_size=batch_size):
        for line in batch["text"]:
            line = line.rstrip("\n")
            if _WIKITEXT_TITLE.match(line) and current:
                articles.append("\n".join(current))
                current = []
            if line.strip():
                current.append(line.strip())
    if current:
        articles.append("\n".join(current))
    return datasets.Dataset.from_dict({"text": articles})


def _wikitext(raw: datasets.DatasetDict) -> datasets.DatasetDict:
    return datasets.DatasetDict({split: group_wikitext_articles(ds) for split, ds in raw.items()})


def _glue_sst2(raw: datasets.DatasetDict) -> datasets.DatasetDict:
    # GLUE hides the test labels (-1), so SST-2 is used as usual: train, and the dev set as validation.
    return datasets.DatasetDict({split: raw[split].remove_columns(["idx"]) for split in ("train", "validation")})


HUB_CORPORA: dict[str, HubSource] = {
    "wikitext-103": HubSource("Salesforce/wikitext", "wikitext-103-raw-v1", "text", ("train", "validation", "test"),
                              "WikiText-103 (Merity et al. 2016), 103M words of Wikipedia, CC BY-SA", _wikitext),
    "tinystories": HubSource("roneneldan/TinyStories", None, "text", ("train", "validation"),
                             "TinyStories (Eldan & Li 2023), 2.1M short stories, CDLA-Sharing-1.0"),
}
HUB_CLASSIFICATION: dict[str, HubSource] = {
    "sst2": HubSource("nyu-mll/glue", "sst2", "sentence", ("train", "validation", "test"),
                      "GLUE SST-2 (Socher et al. 2013), movie-review sentences, positive/negative", _glue_sst2),
}


def load_hub(name: str, source: HubSource, offline_default: str) -> datasets.DatasetDict:
    reason = hub.unreachable_reason()
    hint = (
        f"{name!r} ({source.path}) comes from the Hugging Face Hub, which cannot be used here ({reason}); "
        f"offline, use {offline_default}" + (" or a local .txt/.jsonl/.parquet file" if source in
                                              HUB_CORPORA.values() else "")
    )
    if reason is not None and hub.offline_switch() is None:
        raise OfflineError(hint)  # no network: fail now rather than after the Hub client's retries
    try:
        # With an offline switch set, a data set already in the local Hub cache still loads.
        raw = datasets.load_dataset(source.path, source.config)
    except Exception:  # the Hub's own errors are many and deep; one line says what to do
        if reason is None:
            raise
        raise OfflineError(hint) from None
    return normalize_hub_dataset(raw, source)


def normalize_hub_dataset(raw: datasets.DatasetDict, source: HubSource) -> datasets.DatasetDict:
    """Turn a Hub data set into the course's schema: a ``text`` column, the rest as the source has it."""
    if source.text_column != "text":
        raw = datasets.DatasetDict({s: ds.rename_column(source.text_column, "text") for s, ds in raw.items()})
    return source.postprocess(raw) if source.postprocess else raw


# --------------------------------------------------------------------------------------------------- local files

_LOCAL_FORMATS = {".txt": "text", ".text": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def _local_files(name: str | os.PathLike | list | dict) -> dict[str, list[str]] | None:
    """The files a local corpus is made of, keyed by split (``train`` when no split is given), or None."""
    if isinstance(name, dict):
        files = {split: [str(p) for p in (paths if isinstance(paths, (list, tuple)) else [paths])]
                 for split, paths in name.items()}
    elif isinstance(name, (list, tuple)):
        files = {"train": [str(p) for p in name]}
    elif isinstance(name, os.PathLike) or Path(str(name)).suffix.lower() in _LOCAL_FORMATS:
        files = {"train": [str(name)]}
    else:
        return None
    for paths in files.values():
        for path in paths:
            if Path(path).suffix.lower() not in _LOCAL_FORMATS:
                raise ValueError(f"{path}: unsupported file type; use one of {', '.join(sorted(_LOCAL_FORMATS))}")
            if not Path(path).is_file():
                raise FileNotFoundError(f"{path}: no such file")
    kinds = {_LOCAL_FORMATS[Path(p).suffix.lower()] for paths in files.values() for p in paths}
    if len(kinds) > 1:
        raise ValueError(f"mixed file types {sorted(kinds)}: give files of one type")
    return files


def hash_split(dataset: datasets.Dataset, per_mille: int = VALIDATION_PER_MILLE, salt: str = "split"
               ) -> datasets.DatasetDict:
    """Split into train and validation by a stable hash of each text: the same text always lands in the same split."""
    buckets = [stable_hash(text, salt) % 1000 for text in dataset["text"]]
    validation = [i for i, b in enumerate(buckets) if b < per_mille]
    train = [i for i, b in enumerate(buckets) if b >= per_mille]
    return datasets.DatasetDict({"train": dataset.select(train), "validation": dataset.select(validation)})


def _check_utf8(path: str) -> None:
    """A clear error for a text file that is not UTF-8 (the datasets library fails deep inside its builder)."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                raise ValueError(f"{path}: not UTF-8 text (byte {chunk[exc.start]:#04x} at offset {offset + exc.start}); "
                                 "convert it first, e.g. `iconv -f latin1 -t utf-8 in.txt > out.txt`") from None
            offset += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not UTF-8 text (it ends inside a character); convert it first, e.g. "
                             "`iconv -f latin1 -t utf-8 in.txt > out.txt`") from None


def _load_local(files: dict[str, list[str]]) -> datasets.DatasetDict:
    kind = _LOCAL_FORMATS[Path(next(iter(files.values()))[0]).suffix.lower()]
    if kind in ("text", "json"):
        for paths in files.values():
            for path in paths:
                _check_utf8(path)
    # Plain text: documents are separated by blank lines (fairseq's convention), lines inside a document kept.
    options = {"sample_by": "paragraph"} if kind == "text" else {}
    with quiet_datasets():
        raw = datasets.load_dataset(kind, data_files=files, **options)
        for split, ds in raw.items():
            if "text" not in ds.column_names:
                raise ValueError(f"{files[split][0]}: no 'text' column (columns: {', '.join(ds.column_names)})")
        if kind == "text":  # the blank lines that separate documents are not part of them; blank documents go
            raw = datasets.DatasetDict({s: ds.map(lambda row: {"text": row["text"].strip("\n")}).filter(
                lambda row: bool(row["text"].strip())) for s, ds in raw.items()})
    if set(raw) == {"train"}:
        raw = hash_split(raw["train"])
        if len(raw["train"]) and not len(raw["validation"]):
            raise ValueError(
                f"{', '.join(files['train'])}: {len(raw['train'])} document(s) are too few for a validation split "
                f"(each document goes to validation with probability {VALIDATION_PER_MILLE / 1000:.0%}, by a hash of "
                "its text, and none did): give more text (documents are separated by blank lines), or name a "
                "validation file yourself: load_corpus({'train': ..., 'validation': ...})")
    for split, ds in raw.items():
        if not len(ds):
            raise ValueError(f"{', '.join(files.get(split, files['train']))}: the {split} split has no documents "
                             "(the files are empty or hold only blank lines)")
    return raw


# --------------------------------------------------------------------------------------------------- public


def corpus_statistics(dataset: datasets.DatasetDict) -> dict[str, dict[str, int]]:
    """Documents, characters and (white-space separated) words per split."""
    stats = {}
    for split, ds in dataset.items():
        texts = ds["text"]
        stats[split] = {"documents": len(texts), "characters": sum(map(len, texts)),
                        "words": sum(len(t.split()) for t in texts)}
    return stats


def _report(name: str, dataset: datasets.DatasetDict) -> None:
    for split, s in corpus_statistics(dataset).items():
        print(f"{name} {split}: {s['documents']:,} documents, {s['characters']:,} characters, {s['words']:,} words")


def _name_for_messages(name) -> str:
    return name if isinstance(name, str) else "local files"


def load_corpus(name: str | os.PathLike | list | dict = "python-docs", *, rebuild: bool = False,
                verbose: bool = True) -> datasets.DatasetDict:
    """A pretraining corpus as a ``DatasetDict`` with ``train`` and ``validation`` splits and a ``text`` column.

    ``name`` is ``"python-docs"`` (the offline default), a Hub corpus (``"wikitext-103"``, ``"tinystories"``),
    or local files: a ``.txt`` (documents separated by blank lines), ``.jsonl`` or ``.parquet`` path (with a
    ``text`` column), a list of them, or a dict mapping split names to paths. Files given without splits are split
    95/5 by a stable hash of each text.
    """
    files = _local_files(name)
    if files is not None:
        corpus = _load_local(files)
    elif name == "python-docs":
        corpus = _load_python_docs("corpus", rebuild=rebuild)
    elif name in HUB_CORPORA:
        corpus = load_hub(name, HUB_CORPORA[name], "load_corpus('python-docs')")
    else:
        known = ", ".join(["python-docs", *HUB_CORPORA])
        raise ValueError(f"unknown corpus {name!r}: use one of {known}, or a path to .txt/.jsonl/.parquet files")
    if verbose:
        _report(_name_for_messages(name), corpus)
    return corpus


def load_classification(name: str = "python-docs-topics", *, rebuild: bool = False,
                        verbose: bool = True) -> datasets.DatasetDict:
    """A text-classification set: columns ``text`` and ``label`` (a ``ClassLabel`` that carries the label names).

    ``"python-docs-topics"`` (offline; train/validation/test; its texts never appear in the ``python-docs``
    corpus) or ``"sst2"`` (GLUE SST-2 from the Hub; train/validation, the GLUE dev set).
    """
    if name == "python-docs-topics":
        dataset = _load_python_docs("topics", rebuild=rebuild)
    elif name in HUB_CLASSIFICATION:
        dataset = load_hub(name, HUB_CLASSIFICATION[name], "load_classification('python-docs-topics')")
    else:
        known = ", ".join(["python-docs-topics", *HUB_CLASSIFICATION])
        raise ValueError(f"unknown classification set {name!r}: use one of {known}")
    if verbose:
        _report(name, dataset)
        names = dataset["train"].features["label"].names
        print(f"{name} labels ({len(names)}): {', '.join(names)}")
    return dataset
