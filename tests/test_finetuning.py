"""Finetuning: metrics against scikit-learn, freezing, the loop, files both ways, bad input."""

import re

import datasets
import pytest
import torch

from roberta_from_scratch.config import RobertaConfig
from roberta_from_scratch.finetuning import (
    FinetuneConfig,
    classification_metrics,
    confusion_matrix,
    encode_examples,
    finetune,
    freeze,
    predict,
    regression_metrics,
)
from roberta_from_scratch.model import RobertaForSequenceClassification
from roberta_from_scratch.tokenizer import ByteLevelBPETokenizer

import sklearn.metrics as sklearn_metrics  # noqa: E402 (a runtime dependency: a broken import must fail)


@pytest.mark.parametrize("seed", range(5))
def test_metrics_equal_scikit_learn_on_random_inputs(seed):
    g = torch.Generator().manual_seed(seed)
    classes = 2 + seed
    labels = torch.randint(0, classes, (200,), generator=g)
    predictions = torch.where(torch.rand(200, generator=g) < 0.6, labels, torch.randint(0, classes, (200,), generator=g))
    if seed == 4:
        predictions[predictions == 1] = 0  # a class never predicted: precision 0 for it, as zero_division=0 says
    ours = classification_metrics(labels, predictions, classes)
    kwargs = {"average": "macro", "labels": list(range(classes)), "zero_division": 0}
    assert ours["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(labels, predictions))
    assert ours["precision"] == pytest.approx(sklearn_metrics.precision_score(labels, predictions, **kwargs))
    assert ours["recall"] == pytest.approx(sklearn_metrics.recall_score(labels, predictions, **kwargs))
    assert ours["macro_f1"] == pytest.approx(sklearn_metrics.f1_score(labels, predictions, **kwargs))
    assert confusion_matrix(labels, predictions, classes).tolist() == sklearn_metrics.confusion_matrix(
        labels, predictions, labels=list(range(classes))).tolist()


@pytest.fixture(scope="module")
def task(python_docs):
    corpus, topics = python_docs
    tokenizer = ByteLevelBPETokenizer.train(list(corpus["train"]["text"])[:1500], vocab_size=600)
    names = topics["train"].features["label"].names
    train = encode_examples(topics["train"], tokenizer, 64, len(names))
    validation = encode_examples(topics["validation"], tokenizer, 64, len(names))
    return tokenizer, names, train, validation


def small_classifier(tokenizer, num_labels, seed=0):
    torch.manual_seed(seed)
    return RobertaForSequenceClassification(RobertaConfig.from_preset(
        "tiny", vocab_size=tokenizer.vocab_size, num_labels=num_labels, hidden_size=64, intermediate_size=128,
        max_position_embeddings=66))


def test_finetuning_learns_the_topics(task):
    """Catches: a loop that does not learn (a wrong loss, labels, schedule or frozen weights) but lands near the
    majority baseline by always predicting the largest topic: it must beat that baseline by 10 points."""
    tokenizer, names, train, validation = task
    model = small_classifier(tokenizer, len(names))
    history = finetune(model, train, validation, FinetuneConfig(epochs=6, batch_size=32, lr=2e-3, progress=False,
                                                                device="cpu"), tokenizer.pad_token_id)
    assert [r["epoch"] for r in history.eval] == list(range(1, 7))
    labels = [e["label"] for e in validation]
    majority = max(labels.count(k) for k in set(labels)) / len(labels)  # always guessing the largest topic
    assert history.eval[-1]["accuracy"] > majority + 0.10, (majority, history.eval)  # measured: 28.3% against 15.0%


def test_a_frozen_encoder_stays_frozen(task):
    tokenizer, names, train, validation = task
    model = small_classifier(tokenizer, len(names))
    frozen_before = model.roberta.layers[0].ffn_in.weight.clone()
    top_before = model.roberta.layers[1].ffn_in.weight.clone()
    trainable = freeze(model, trainable_layers=1)
    assert trainable < model.num_parameters() and not model.roberta.embeddings.word_embeddings.weight.requires_grad
    finetune(model, train[:64], validation[:16], FinetuneConfig(epochs=1, batch_size=32, lr=1e-3, progress=False,
                                                               device="cpu"), tokenizer.pad_token_id)
    assert torch.equal(model.roberta.layers[0].ffn_in.weight, frozen_before)  # exact: never updated
    assert not torch.equal(model.roberta.layers[1].ffn_in.weight, top_before)
    assert freeze(model, None) == model.num_parameters()


def test_finetuning_on_the_fp16_path_scales_the_loss_on_its_own_device(task, monkeypatch):
    """Catches: finetuning's GradScaler made for CUDA whatever the device, which on a CPU rehearsing a T4's path
    (RFS_PRECISION=fp16) disables itself with a warning, so that fp16 runs without loss scaling; and a plain AdamW
    under the scaler, whose step makes the scaler read its overflow flag (a wait for the device) at every step."""
    import math

    from roberta_from_scratch import finetuning

    monkeypatch.setenv("RFS_PRECISION", "fp16")
    scalers, optimizers = [], []

    class Recorded(torch.amp.GradScaler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            scalers.append(self)

    make_optimizer = finetuning.make_optimizer
    monkeypatch.setattr(torch.amp, "GradScaler", Recorded)
    monkeypatch.setattr(finetuning, "make_optimizer", lambda *args, **kwargs: optimizers.append(
        make_optimizer(*args, **kwargs)) or optimizers[-1])
    tokenizer, names, train, validation = task
    model = small_classifier(tokenizer, len(names))
    before = model.classifier.out_proj.weight.detach().clone()
    history = finetune(model, train[:64], validation[:16], FinetuneConfig(epochs=1, batch_size=32, lr=1e-3,
                                                                          progress=False, device="cpu"),
                       tokenizer.pad_token_id)
    assert [s.is_enabled() for s in scalers] == [True], "the fp16 path ran without loss scaling"
    assert scalers[0].get_scale() == 2.0**16  # the default scale, never halved: no step was skipped
    assert [o.defaults["fused"] for o in optimizers] == [True]
    assert len(history.train) == 2 and all(math.isfinite(r["loss"]) for r in history.train)
    assert not torch.equal(model.classifier.out_proj.weight, before)  # exact: an untouched weight keeps every bit, so this sees any update


def test_finetuned_model_saves_and_loads_with_equal_logits_in_both_libraries(task, tmp_path):
    import transformers
    tokenizer, names, train, validation = task
    model = small_classifier(tokenizer, len(names)).eval()
    model.save_pretrained(tmp_path)
    ours = RobertaForSequenceClassification.from_pretrained(tmp_path)
    theirs = transformers.RobertaForSequenceClassification.from_pretrained(tmp_path).eval()
    logits = predict(model, validation[:20], tokenizer.pad_token_id)
    torch.testing.assert_close(predict(ours, validation[:20], tokenizer.pad_token_id), logits)
    from roberta_from_scratch.batching import collate

    batch = collate(validation[:20], tokenizer.pad_token_id)
    with torch.no_grad():  # transformers' code: other kernels and another order of sums, so fp32 rounding (1e-5)
        torch.testing.assert_close(theirs(batch["input_ids"], attention_mask=batch["attention_mask"]).logits, logits,
                                   rtol=1e-5, atol=1e-5)


def test_bad_input_gets_clear_errors(task, tmp_path):
    tokenizer, names, _, _ = task
    rows = datasets.Dataset.from_dict({"sentence": ["a"], "target": [0]})
    with pytest.raises(ValueError, match="needs 'text' and 'label' columns; this one has: sentence, target"):
        encode_examples(rows, tokenizer, 16)
    rows = datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 9]})
    with pytest.raises(ValueError, match=r"label 9 is outside \[0, 7\)"):
        encode_examples(rows, tokenizer, 16, num_labels=7)
    small_classifier(tokenizer, 2).save_pretrained(tmp_path)
    seven = RobertaForSequenceClassification.from_pretrained(tmp_path, num_labels=7)  # asked for: a new projection
    assert seven.classifier.out_proj.out_features == 7
    assert {"classifier.out_proj.weight", "classifier.out_proj.bias"} <= set(seven.load_report.missing)


def test_an_explicit_num_labels_wins_over_saved_label_names(tmp_path):
    """Catches: from_pretrained(dir, num_labels=5) returning a 2-label model because the saved config carries
    id2label of the old head (a new head of another size must get the size asked for)."""
    config = RobertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=20, id2label={0: "neg", 1: "pos"})
    RobertaForSequenceClassification(config).save_pretrained(tmp_path)
    five = RobertaForSequenceClassification.from_pretrained(tmp_path, num_labels=5)
    assert five.config.num_labels == 5 and five.classifier.out_proj.out_features == 5
    same = RobertaForSequenceClassification.from_pretrained(tmp_path)
    assert same.config.id2label == {0: "neg", 1: "pos"}
    kept = RobertaForSequenceClassification.from_pretrained(tmp_path, num_labels=2)
    assert kept.config.id2label == {0: "neg", 1: "pos"}  # the same size: the names still apply


def test_regression_labels_stay_real_numbers():
    """Catches: regression targets (num_labels=1, STS-B's similarity scores) cast to int, so 3.8 trained as 3."""
    rows = datasets.Dataset.from_dict({"text": ["a b", "c d e"], "label": [3.8, 0.25]})
    tokenizer = ByteLevelBPETokenizer.train(["a b c d e"] * 20, vocab_size=270)
    examples = encode_examples(rows, tokenizer, 16, num_labels=1)
    assert [e["label"] for e in examples] == [3.8, 0.25]
    from roberta_from_scratch.batching import collate

    assert collate(examples, tokenizer.pad_token_id)["labels"].dtype == torch.float32


@pytest.mark.parametrize("seed", range(3))
def test_regression_metrics_equal_scipy_and_scikit_learn(seed):
    from scipy import stats

    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 6, (300,), generator=g).double() / 5 * 5  # STS-B-like scores on a grid: many ties
    predictions = labels + torch.randn(300, generator=g, dtype=torch.float64)
    ours = regression_metrics(labels, predictions)
    # tolerance 1e-12: float64 sums in another order than SciPy's
    assert ours["pearson"] == pytest.approx(stats.pearsonr(predictions, labels).statistic, abs=1e-12)
    assert ours["spearman"] == pytest.approx(stats.spearmanr(predictions, labels).statistic, abs=1e-12)
    assert ours["mse"] == pytest.approx(sklearn_metrics.mean_squared_error(labels, predictions), rel=1e-12)


def test_finetuning_a_regression_learns_a_score_and_reports_regression_metrics():
    """Catches: finetune(num_labels=1) crashing after the first epoch (the default evaluation took an argmax and a
    bincount of float labels), and a regression loop that does not learn: the score is the share of "good" words
    in a text, and the correlation after training must be high."""
    g = torch.Generator().manual_seed(0)
    texts, scores = [], []
    for _ in range(240):
        good = int(torch.randint(0, 7, (), generator=g))
        words = ["good"] * good + ["bad"] * (6 - good)
        texts.append(" ".join(words[i] for i in torch.randperm(6, generator=g).tolist()))
        scores.append(good / 6 * 5)  # 0 to 5, as STS-B's scores
    rows = datasets.Dataset.from_dict({"text": texts, "label": scores})
    tokenizer = ByteLevelBPETokenizer.train(texts, vocab_size=270)
    train = encode_examples(rows.select(range(200)), tokenizer, 16, num_labels=1)
    validation = encode_examples(rows.select(range(200, 240)), tokenizer, 16, num_labels=1)
    model = small_classifier(tokenizer, 1)
    history = finetune(model, train, validation, FinetuneConfig(epochs=12, batch_size=16, lr=2e-3, progress=False,
                                                                device="cpu"), tokenizer.pad_token_id)
    assert [r["epoch"] for r in history.eval] == list(range(1, 13))
    assert set(history.eval[-1]) >= {"mse", "pearson", "spearman"} and "accuracy" not in history.eval[-1]
    variance = torch.tensor(scores[200:]).var(unbiased=False).item()  # the MSE of always guessing the mean
    assert history.eval[-1]["pearson"] > 0.9, history.eval  # measured: 0.999
    assert history.eval[-1]["mse"] < 0.2 * variance, (variance, history.eval)  # measured: 0.006 against 2.49


@pytest.mark.parametrize("bad", [dict(epochs=0), dict(batch_size=0), dict(lr=0), dict(warmup_ratio=1.5),
                                 dict(max_length=2)])
def test_finetuning_settings_are_refused_with_the_fix(bad):
    """Catches: finetune --batch-size 0 ending in a ZeroDivisionError inside the loop, --epochs 0 training nothing
    and saving an untrained head, a warm-up longer than the run."""
    with pytest.raises(ValueError, match=next(iter(bad))):
        FinetuneConfig(**bad)


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "0"], "--batch-size: 0 must be at least 1"),
    (["--epochs", "0"], "--epochs: 0 must be at least 1"),
    (["--trainable-layers", "-1"], "--trainable-layers: -1 must be at least 0"),
    (["--lr", "0"], "--lr: 0 must be positive"),
    (["--warmup-ratio", "1.5"], r"--warmup-ratio: 1.5 must be in \[0, 1\)"),
    (["--max-length", "2"], "max_length=2: a text needs at least 3 tokens"),
    (["--device", "cuda"], "--device cuda: .*CUDA is not available"),
])
def test_the_finetune_command_refuses_impossible_options_before_any_work(argv, message, capsys, tmp_path, monkeypatch):
    """Catches: the command line reading nonsense and failing later from deep inside the loop (ZeroDivisionError
    for --batch-size 0, an AssertionError from torch for --device cuda without CUDA) or training nothing
    (--epochs 0); each must end at once with an argparse error that names the option."""
    from roberta_from_scratch.commands import finetune as cli

    # A machine without CUDA, wherever the test runs (on one with a GPU, --device cuda is right): the check is
    # tested there too, instead of passing without running.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as stop:
        cli.main(["--model", str(tmp_path / "none"), "--output-dir", str(tmp_path / "out"), *argv])
    assert stop.value.code == 2
    assert re.search(message, capsys.readouterr().err), capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing was made


def test_freeze_refuses_layers_the_model_lacks():
    """Catches: freeze(model, -1) freezing every layer and freeze(model, 5) on 2 layers freezing only the
    embeddings, both silently."""
    model = RobertaForSequenceClassification(RobertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                                                           num_attention_heads=2, intermediate_size=32,
                                                           max_position_embeddings=20))
    for bad in (-1, 3):
        with pytest.raises(ValueError, match=f"trainable_layers={bad}: the model has 2 layers"):
            freeze(model, bad)
    assert freeze(model, 2) == freeze(model, None) - sum(p.numel() for p in model.roberta.embeddings.parameters())


# ----------------------------------------------------------------------------------------------- the command's tasks


@pytest.fixture(scope="module")
def pretrained_dir(task, tmp_path_factory):
    """What ``--model`` names: a tiny pretrained encoder (64 positions, as at the cpu scale) with its tokenizer."""
    from roberta_from_scratch.model import RobertaForMaskedLM

    tokenizer = task[0]
    directory = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    RobertaForMaskedLM(RobertaConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size, hidden_size=64,
                                                 intermediate_size=128, max_position_embeddings=66)
                       ).save_pretrained(directory)
    tokenizer.save(directory)
    return directory


def _first_rows(monkeypatch, python_docs_dir, module, loader: str, rows: int):
    """The command's ``module.loader`` reads the test corpus and keeps the first ``rows`` rows of each split."""
    from roberta_from_scratch import data

    monkeypatch.setenv(data.DATA_DIR_ENV, str(python_docs_dir))
    load = getattr(module, loader)
    monkeypatch.setattr(module, loader, lambda name, **kw: datasets.DatasetDict(
        {split: part.select(range(min(rows, len(part)))) for split, part in load(name, **kw).items()}))


def _saved(out, cls):
    """The saved run: the model reloaded as ``cls`` (asserting that the file was written by that class, with its
    head), the tokenizer and history.json."""
    import json

    assert json.loads((out / "config.json").read_text())["architectures"] == [cls.__name__]
    model = cls.from_pretrained(out)
    assert not model.load_report.missing and not model.load_report.unused, model.load_report
    ByteLevelBPETokenizer.from_pretrained(out)
    return model, json.loads((out / "history.json").read_text())


def test_the_finetune_command_tags_entities(task, pretrained_dir, python_docs, python_docs_dir, monkeypatch,
                                            capsys, tmp_path):
    """Catches: --task python-docs-entities refused or trained as a classifier (a sequence head, class labels), a
    token head of the wrong size or without its tag names, a history without the per-epoch entity F1, no test
    scores, and --trainable-layers ignored for the tagger."""
    from roberta_from_scratch.commands import finetune as cli
    from roberta_from_scratch import tagging
    from roberta_from_scratch.model import RobertaForMaskedLM, RobertaForTokenClassification

    _first_rows(monkeypatch, python_docs_dir, tagging, "load_tagging", 64)
    out = tmp_path / "out"
    cli.main(["--model", str(pretrained_dir), "--task", "python-docs-entities", "--epochs", "1", "--batch-size",
              "16", "--lr", "1e-3", "--trainable-layers", "1", "--device", "cpu", "--no-progress",
              "--output-dir", str(out)])
    printed = capsys.readouterr().out
    assert re.search(r"epoch 1: validation entity F1 [\d.]+ \(precision [\d.]+, recall [\d.]+\)", printed), printed
    assert re.search(r"test \(64 sentences\): entity F1", printed), printed
    model, history = _saved(out, RobertaForTokenClassification)
    assert model.classifier.out_features == len(tagging.LABELS)
    assert model.config.id2label == dict(enumerate(tagging.LABELS))
    assert [r["epoch"] for r in history["eval"]] == [1] and len(history["train"]) == 4  # 64 sentences / 16
    assert all(0 <= history["eval"][0][k] <= 1 for k in ("f1", "precision", "recall"))
    assert 0 <= history["test"]["f1"] <= 1
    before = RobertaForMaskedLM.from_pretrained(pretrained_dir).roberta
    assert torch.equal(model.roberta.layers[0].ffn_in.weight, before.layers[0].ffn_in.weight)  # frozen: exact
    assert not torch.equal(model.roberta.layers[1].ffn_in.weight, before.layers[1].ffn_in.weight)  # trained


def test_the_finetune_command_answers_questions(task, pretrained_dir, python_docs, python_docs_dir, monkeypatch,
                                                capsys, tmp_path):
    """Catches: --task python-docs-qa refused or given a classification head, a span head that is not 2 wide, a
    history without the per-epoch exact match and F1, the default stride not the one documented for a 64-token
    model, and a --stride the model's positions cannot hold (the model reads 64 tokens; --max-length says 128)
    passed on to the windows instead of refused."""
    from roberta_from_scratch.commands import finetune as cli
    from roberta_from_scratch import qa
    from roberta_from_scratch.model import RobertaForQuestionAnswering

    _first_rows(monkeypatch, python_docs_dir, qa, "load_qa", 16)
    out = tmp_path / "out"
    argv = ["--model", str(pretrained_dir), "--task", "python-docs-qa", "--epochs", "1", "--batch-size", "16",
            "--lr", "1e-3", "--device", "cpu", "--no-progress"]
    cli.main([*argv, "--output-dir", str(out)])
    printed = capsys.readouterr().out
    assert "stride 16)" in printed and cli.default_stride(64) == 16 and cli.default_stride(384) == 128
    assert re.search(r"epoch 1: validation exact match [\d.]+, F1 [\d.]+", printed), printed
    assert re.search(r"test \(16 questions\): exact match", printed), printed
    model, history = _saved(out, RobertaForQuestionAnswering)
    assert model.qa_outputs.out_features == 2
    assert [r["epoch"] for r in history["eval"]] == [1]
    assert all(0 <= history["eval"][0][k] <= 100 for k in ("exact_match", "f1"))
    assert set(history["test"]) == {"exact_match", "f1"}
    with pytest.raises(SystemExit) as stop:
        cli.main([*argv, "--stride", "64", "--output-dir", str(tmp_path / "again")])
    assert stop.value.code == 2
    assert "--stride 64: the model reads 64 tokens at most" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--task", "nope"], r"--task: invalid choice: 'nope' \(choose from 'python-docs-topics', 'sst2', "
                         r"'python-docs-entities', 'conll2003', 'python-docs-qa', 'squad'\)"),
    (["--task", "squad", "--stride", "128"], "--stride 128: windows of --max-length 128 tokens must share fewer "
                                             "than 128"),
    (["--task", "python-docs-qa", "--max-length", "64", "--stride", "100"], "--stride 100: windows of "
                                                                           "--max-length 64"),
    (["--task", "python-docs-qa", "--stride", "-1"], "--stride: -1 must be at least 0"),
    (["--task", "python-docs-qa", "--stride", "8.5"], "--stride: '8.5' is not a number"),
    (["--task", "python-docs-entities", "--stride", "8"], "--stride applies to question answering"),
])
def test_the_finetune_command_refuses_unknown_tasks_and_strides(argv, message, capsys, tmp_path):
    """Catches: an unknown --task passed through to the classification loader (a ValueError traceback after the
    output folder was made, naming only the classification sets), a --stride that leaves windows no new tokens
    accepted, and a --stride silently ignored by a task without windows: each an argparse error before any work."""
    from roberta_from_scratch import data, qa, tagging
    from roberta_from_scratch.commands import finetune as cli

    assert set(cli.TASKS) == {"python-docs-topics", *data.HUB_CLASSIFICATION, tagging.OFFLINE_NAME,
                              *tagging.HUB_TAGGING, qa.OFFLINE_NAME, *qa.HUB_QA}  # every loader's names
    with pytest.raises(SystemExit) as stop:
        cli.main(["--model", str(tmp_path / "none"), "--output-dir", str(tmp_path / "out"), *argv])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_the_mean_pooled_head_reads_the_mean_of_the_real_tokens():
    """Catches: a mean that counts padding (the logits of a text would change with its batch), or a head that still
    reads <s>; the mean-pooled model keeps RoBERTa's head and its weights' names."""
    from roberta_from_scratch.model import MeanPooledSequenceClassification

    torch.manual_seed(0)
    config = RobertaConfig.from_preset("tiny", vocab_size=50, num_labels=3, hidden_dropout_prob=0.0,
                                       attention_probs_dropout_prob=0.0)
    model = MeanPooledSequenceClassification(config).eval()
    ids = torch.tensor([[0, 7, 8, 9, 2], [0, 11, 2, 1, 1]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        logits = model(ids, mask).logits
        hidden = model.roberta(ids, mask).last_hidden_state
        by_hand = model.classifier(torch.stack([hidden[0].mean(0), hidden[1, :3].mean(0)]).unsqueeze(1))
        alone = model(ids[1:, :3], mask[1:, :3]).logits
        cls_head = RobertaForSequenceClassification(config).eval()
        cls_head.load_state_dict(model.state_dict())
        at_s = cls_head(ids, mask).logits
    torch.testing.assert_close(logits, by_hand, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits[1:], alone, rtol=1e-5, atol=1e-5)  # padding changes nothing
    assert (logits - at_s).abs().max() > 1e-3  # not the <s> head
