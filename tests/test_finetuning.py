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
)
from roberta_from_scratch.model import RobertaForSequenceClassification
from roberta_from_scratch.tokenizer import ByteLevelBPETokenizer

import sklearn.metrics as sklearn_metrics  # noqa: E402 (declared in the test extra: a broken import must fail)


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
    assert torch.equal(model.roberta.layers[0].ffn_in.weight, frozen_before)
    assert not torch.equal(model.roberta.layers[1].ffn_in.weight, top_before)
    assert freeze(model, None) == model.num_parameters()


def test_finetuned_model_saves_and_loads_with_equal_logits_in_both_libraries(task, tmp_path):
    import transformers
    tokenizer, names, train, validation = task
    model = small_classifier(tokenizer, len(names)).eval()
    model.save_pretrained(tmp_path)
    ours = RobertaForSequenceClassification.from_pretrained(tmp_path)
    theirs = transformers.RobertaForSequenceClassification.from_pretrained(tmp_path).eval()
    logits = predict(model, validation[:20], tokenizer.pad_token_id)
    torch.testing.assert_close(predict(ours, validation[:20], tokenizer.pad_token_id), logits)
    from roberta_from_scratch.finetuning import collate

    batch = collate(validation[:20], tokenizer.pad_token_id)
    with torch.no_grad():
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
    from roberta_from_scratch.finetuning import collate

    assert collate(examples, tokenizer.pad_token_id)["labels"].dtype == torch.float32


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
def test_the_finetune_command_refuses_impossible_options_before_any_work(argv, message, capsys, tmp_path):
    """Catches: the command line reading nonsense and failing later from deep inside the loop (ZeroDivisionError
    for --batch-size 0, an AssertionError from torch for --device cuda without CUDA) or training nothing
    (--epochs 0); each must end at once with an argparse error that names the option."""
    from roberta_from_scratch import finetune as cli

    if argv[0] == "--device" and torch.cuda.is_available():
        return  # (CI has no GPU; on a machine with one, --device cuda is right)
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
