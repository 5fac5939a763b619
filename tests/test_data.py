"""The offline data layer: the python-docs corpus, the labelled set, local files, and the Hub path offline."""

import json
import time
from pathlib import Path

import datasets
import pytest

from roberta_from_scratch import OfflineError, data, hub, load_classification, load_corpus


# ------------------------------------------------------------------------------------------ python-docs corpus


def test_corpus_is_real_prose_of_the_expected_size(python_docs):
    corpus, _ = python_docs
    assert set(corpus) == {"train", "validation"}
    assert corpus["train"].column_names == ["text", "source", "kind"]
    stats = data.corpus_statistics(corpus)
    total = sum(s["characters"] for s in stats.values())
    assert 1_000_000 < total < 4_000_000, total  # about 1.6 MB on CPython 3.11
    documents = stats["train"]["documents"] + stats["validation"]["documents"]
    assert 0.03 < stats["validation"]["documents"] / documents < 0.08
    assert {"module", "class", "function", "topic"} == set(corpus["train"]["kind"])
    words = stats["train"]["words"]
    assert 5.0 < stats["train"]["characters"] / words < 9.0  # English-like characters per word, not code or noise


def test_corpus_is_clean_and_deduplicated(python_docs):
    corpus, _ = python_docs
    texts = [t for split in corpus for t in corpus[split]["text"]]
    keys = [" ".join(t.split()) for t in texts]
    assert len(set(keys)) == len(keys)
    assert all(len(t) >= data.MIN_CHARS and t == t.strip() and "\n\n\n" not in t for t in texts)
    assert not any(line != line.rstrip() for t in texts for line in t.split("\n"))


def test_split_is_a_stable_function_of_the_text(python_docs):
    corpus, _ = python_docs
    for split, wanted in (("train", False), ("validation", True)):
        for text in corpus[split]["text"]:
            assert (data.stable_hash(text, "split") % 1000 < data.VALIDATION_PER_MILLE) is wanted
    # white space does not change the hash; the salt does
    assert data.stable_hash("a  b\nc") == data.stable_hash("a b c") != data.stable_hash("a b c", "other")


def test_the_cache_reads_back_what_was_built(python_docs, python_docs_dir, monkeypatch):
    """Catches: a cache whose read-back differs from the build it stored (rows lost or reordered, a column or the
    label names dropped): the fixture's corpus is the build; here the same data directory is read again, from the
    cache on disk. (It replaces a test that compared one build with another and never read the cache.)"""
    built_corpus, built_topics = python_docs
    monkeypatch.setenv(data.DATA_DIR_ENV, str(python_docs_dir))
    cached_corpus, cached_topics = load_corpus(verbose=False), data.load_classification(verbose=False)
    for built, cached in ((built_corpus, cached_corpus), (built_topics, cached_topics)):
        assert set(cached) == set(built)
        for split in built:
            files = [f["filename"] for f in cached[split].cache_files]
            assert files and all(f.startswith(str(python_docs_dir)) for f in files), files  # read from disk
            assert cached[split].features == built[split].features
            assert cached[split].to_dict() == built[split].to_dict()


def test_cache_is_written_whole_under_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    load_corpus(verbose=False)
    (cache,) = (tmp_path / "cache").iterdir()
    assert (cache / "done").is_file() and (cache / "corpus").is_dir() and (cache / "topics").is_dir()
    assert data.data_dir() == tmp_path


def test_load_corpus_reports_documents_characters_words(python_docs, capsys):
    load_corpus()
    out = capsys.readouterr().out
    assert "python-docs train:" in out and "documents" in out and "characters" in out and "words" in out


# ------------------------------------------------------------------------------------------ labelled set


def test_topics_are_large_balanced_and_labelled(python_docs):
    _, topics = python_docs
    assert set(topics) == {"train", "validation", "test"}
    names = topics["train"].features["label"].names
    assert names == list(data.TOPIC_LABELS) and len(names) >= 4
    counts = [0] * len(names)
    for split in topics:
        for label in topics[split]["label"]:
            counts[label] += 1
    assert sum(counts) >= 1000, counts
    assert min(counts) / max(counts) >= 0.5, counts
    sizes = {split: len(topics[split]) for split in topics}
    assert 0.75 < sizes["train"] / sum(sizes.values()) < 0.85, sizes


def test_topic_labels_match_the_module_area(python_docs):
    _, topics = python_docs
    for row in topics["train"]:
        area = data.TOPIC_LABELS[row["label"]]
        assert row["source"].split(".")[0] in data.TOPIC_AREAS[area], row["source"]


def test_labelled_texts_never_appear_in_the_pretraining_corpus(python_docs):
    corpus, topics = python_docs
    pretraining = {" ".join(t.split()) for split in corpus for t in corpus[split]["text"]}
    labelled = [" ".join(t.split()) for split in topics for t in topics[split]["text"]]
    assert len(set(labelled)) == len(labelled)
    assert not pretraining & set(labelled)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match="python-docs, wikitext-103, tinystories"):
        load_corpus("wikipedia-2019", verbose=False)
    with pytest.raises(ValueError, match="python-docs-topics, sst2"):
        load_classification("imdb", verbose=False)


# ------------------------------------------------------------------------------------------ the Hub, offline


@pytest.mark.parametrize("call", [lambda: load_corpus("wikitext-103"), lambda: load_corpus("tinystories"),
                                  lambda: load_classification("sst2")])
def test_hub_names_fail_fast_offline_with_one_line(call):
    start = time.perf_counter()
    with pytest.raises(OfflineError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and "HF_HUB_OFFLINE" in message and "python-docs" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no traceback from inside datasets
    assert time.perf_counter() - start < 10


def test_without_network_the_hub_is_not_even_tried(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(hub.socket, "create_connection", _refuse)
    monkeypatch.setattr(datasets, "load_dataset", _must_not_be_called)
    with pytest.raises(OfflineError, match="cannot connect to .*load_corpus\\('python-docs'\\)"):
        load_corpus("wikitext-103")


def _refuse(*args, **kwargs):
    raise OSError(101, "Network is unreachable")


def _must_not_be_called(*args, **kwargs):
    raise AssertionError("load_dataset was called without a network")


def _wikitext_like(tmp_path):
    """Files with the schema of Salesforce/wikitext: one paragraph or title per row, blank rows between."""
    rows = ["", " = Valkyria Chronicles III = \n", "", " Senjō no Valkyria 3 is a game . \n",
            " = = Gameplay = = \n", " It is a tactical role @-@ playing game . \n", "",
            " = Tropical Storm Ana = \n", "", " Ana formed in April . \n", " It hit Florida . \n"]
    files = {}
    for split in ("train", "validation", "test"):
        path = tmp_path / f"{split}.parquet"
        datasets.Dataset.from_dict({"text": rows}).to_parquet(str(path))
        files[split] = str(path)
    return datasets.load_dataset("parquet", data_files=files)


def test_hub_corpus_code_path_on_local_files_of_the_same_schema(tmp_path, monkeypatch):
    local = _wikitext_like(tmp_path)
    calls = []

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name))
        return local

    monkeypatch.setattr(hub, "unreachable_reason", lambda: None)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    corpus = load_corpus("wikitext-103", verbose=False)
    assert calls == [("Salesforce/wikitext", "wikitext-103-raw-v1")]
    assert set(corpus) == {"train", "validation", "test"}
    articles = corpus["train"]["text"]
    assert len(articles) == 2  # grouped by top-level title; the "= = Gameplay = =" section stays inside
    assert articles[0].split("\n") == ["= Valkyria Chronicles III =", "Senjō no Valkyria 3 is a game .",
                                       "= = Gameplay = =", "It is a tactical role @-@ playing game ."]
    assert articles[1].startswith("= Tropical Storm Ana =") and articles[1].endswith("It hit Florida .")


def test_hub_classification_code_path_on_local_files_of_the_same_schema(tmp_path, monkeypatch):
    features = datasets.Features({"sentence": datasets.Value("string"), "label": datasets.ClassLabel(
        names=["negative", "positive"]), "idx": datasets.Value("int32")})
    splits = {}
    for split, labels in (("train", [0, 1, 1]), ("validation", [1, 0]), ("test", [-1, -1])):
        rows = {"sentence": [f"{split} sentence {i} " for i in range(len(labels))], "label": labels,
                "idx": list(range(len(labels)))}
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(tmp_path / f"{split}.parquet"))
        splits[split] = str(tmp_path / f"{split}.parquet")
    local = datasets.load_dataset("parquet", data_files=splits, features=features)
    monkeypatch.setattr(hub, "unreachable_reason", lambda: None)
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name=None, **k: local)
    sst2 = load_classification("sst2", verbose=False)
    assert set(sst2) == {"train", "validation"}  # GLUE's test labels are hidden
    assert sst2["train"].column_names == ["text", "label"]
    assert sst2["train"].features["label"].names == ["negative", "positive"]
    assert list(sst2["validation"]["label"]) == [1, 0]


def _hub_cache_of(dataset, repo_id: str, config_name: str, cache_dir):
    """A datasets cache holding ``dataset`` as ``load_dataset(repo_id, config_name)`` leaves it after a download:
    Arrow files and dataset_info.json in ``<cache>/<namespace>___<name>/<config>/<version>/<hash>/``. Written by
    datasets' own parquet builder and moved to the folder a Hub download uses."""
    import json
    import shutil

    from datasets.packaged_modules.parquet.parquet import Parquet

    files = {}
    for split, ds in dataset.items():
        files[split] = str(Path(cache_dir).parent / f"hub-{split}.parquet")
        ds.to_parquet(files[split])
    name = repo_id.split("/")[-1]
    builder = Parquet(cache_dir=str(Path(cache_dir).parent / "build"), dataset_name=name, config_name=config_name,
                      data_files=files, hash="0" * 16)
    builder.download_and_prepare()
    target = Path(cache_dir, repo_id.replace("/", "___"), config_name, "0.0.0", "0" * 16)
    shutil.copytree(builder.cache_dir, target)
    info = json.loads((target / "dataset_info.json").read_text())
    (target / "dataset_info.json").write_text(json.dumps({**info, "config_name": config_name}))


def test_offline_switch_still_reads_the_local_hub_cache(tmp_path, monkeypatch):
    """Catches: an offline switch that refuses a Hub corpus already in the local datasets cache (a learner who
    downloaded WikiText once and then went offline). The cache is real: files in the layout a download leaves,
    read by datasets' own cache loader, with the network switched off; nothing is mocked."""
    import datasets.config

    cache = tmp_path / "hf-datasets"
    _hub_cache_of(_wikitext_like(tmp_path), "Salesforce/wikitext", "wikitext-103-raw-v1", cache)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    assert hub.offline_switch() is not None  # conftest sets HF_HUB_OFFLINE=1 before datasets is imported
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "course-data"))
    corpus = load_corpus("wikitext-103", verbose=False)
    assert "= Tropical Storm Ana =\nAna formed in April ." in corpus["validation"]["text"][-1]
    assert len(corpus["validation"]) == 2  # two articles, grouped from the cached rows
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", empty)
    with pytest.raises(data.OfflineError, match="Hugging Face Hub"):  # without the cache: the one-line fix
        load_corpus("wikitext-103", verbose=False)


# ------------------------------------------------------------------------------------------ local files


def test_text_file_documents_are_separated_by_blank_lines(tmp_path):
    docs = [f"Document {i} first line.\nDocument {i} second line." for i in range(40)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    corpus = load_corpus(path, verbose=False)
    got = sorted(list(corpus["train"]["text"]) + list(corpus["validation"]["text"]))
    assert got == sorted(docs)
    assert all(data.stable_hash(t, "split") % 1000 < data.VALIDATION_PER_MILLE for t in corpus["validation"]["text"])


def test_jsonl_and_parquet_files_with_given_splits(tmp_path):
    train, valid = tmp_path / "train.jsonl", tmp_path / "valid.jsonl"
    train.write_text("".join(json.dumps({"text": f"train {i}", "id": i}) + "\n" for i in range(5)))
    valid.write_text(json.dumps({"text": "valid 0", "id": 0}) + "\n")
    corpus = load_corpus({"train": train, "validation": str(valid)}, verbose=False)
    assert list(corpus["train"]["text"]) == [f"train {i}" for i in range(5)]
    assert list(corpus["validation"]["text"]) == ["valid 0"]
    parquet = tmp_path / "c.parquet"
    datasets.Dataset.from_dict({"text": [f"doc {i}" for i in range(200)]}).to_parquet(str(parquet))
    corpus = load_corpus(str(parquet), verbose=False)
    assert len(corpus["train"]) + len(corpus["validation"]) == 200 and len(corpus["validation"]) > 0


def test_bad_local_files_get_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt: no such file"):
        load_corpus(tmp_path / "missing.txt")
    (tmp_path / "table.csv").write_text("text\nhello\n")
    with pytest.raises(ValueError, match="unsupported file type.*parquet"):
        load_corpus([tmp_path / "table.csv"])
    (tmp_path / "rows.jsonl").write_text(json.dumps({"body": "no text column"}) + "\n")
    with pytest.raises(ValueError, match="no 'text' column \\(columns: body\\)"):
        load_corpus(tmp_path / "rows.jsonl")


def test_local_text_that_cannot_make_a_corpus_is_refused_with_the_fix(tmp_path):
    """Catches: a short single file whose validation split comes out empty, which crashed pretraining later with
    "Column 'input_ids' doesn't exist"; a file of blank lines; and a Latin-1 file, which failed deep inside the
    datasets builder with DatasetGenerationError instead of naming the file, the byte and the fix."""
    short = tmp_path / "short.txt"
    short.write_text("One short document.\n\nAnd another one.\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"short.txt: 2 document\(s\) are too few for a validation split.*"
                                         r"'validation'"):
        load_corpus(short, verbose=False)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n\n\n")
    with pytest.raises(ValueError, match="blank.txt: the train split has no documents"):
        load_corpus(blank, verbose=False)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Caf\u00e9 au lait.\n\nUn autre.\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.txt: not UTF-8 text \(byte 0xe9 at offset 3\).*iconv"):
        load_corpus(latin, verbose=False)
    given = load_corpus({"train": short, "validation": short}, verbose=False)  # splits named: no hash split
    assert len(given["train"]) == len(given["validation"]) == 2
