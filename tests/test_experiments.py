"""Experiments too long for a notebook (static against dynamic masking): the arms, the runs, the cached results."""

import json
import statistics
from dataclasses import asdict

import pytest
import torch

from roberta_from_scratch.course import experiments
from roberta_from_scratch.config import RobertaConfig
from roberta_from_scratch.masking import DataCollatorForMLM
from roberta_from_scratch.tokenizer import ByteLevelBPETokenizer


@pytest.fixture(scope="module")
def setting(python_docs):
    corpus, _ = python_docs
    texts = list(corpus["train"]["text"][:300])
    tokenizer = ByteLevelBPETokenizer.train(texts, vocab_size=400)
    blocks = [tokenizer.encode(t)[:32] for t in texts if len(tokenizer.encode(t)) > 8]
    config = RobertaConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size, hidden_size=32,
                                       num_attention_heads=2, intermediate_size=64, max_position_embeddings=34)
    return tokenizer, config, DataCollatorForMLM(tokenizer), blocks


def test_static_arm_holds_fixed_distinct_copies_and_dynamic_the_blocks(setting):
    """Catches: a static arm that re-masks (then it is dynamic), copies that share one mask (then it is BERT's
    single static mask, not the paper's 10), or a dynamic arm that was masked ahead of time."""
    _, _, collator, blocks = setting
    arms = experiments.masking_arms(blocks[:6], collator, duplicates=4, seed=0)
    assert arms["dynamic"] == blocks[:6]
    static = arms["static"]
    assert len(static) == 6 * 4
    again = experiments.masking_arms(blocks[:6], collator, duplicates=4, seed=0)["static"]
    for a, b in zip(static, again):  # the same seed gives the same masks: fixed, not redrawn
        # exact: integer ids drawn from one seed by the same calls
        assert torch.equal(a["labels"], b["labels"]) and torch.equal(a["input_ids"], b["input_ids"])
    copies = [static[i]["labels"] for i in range(4)]  # copies of block 0
    assert len({tuple(c.tolist()) for c in copies}) > 1, "the copies of a block must be masked differently"
    for item, block in zip(static[::4], blocks[:6]):
        targets = item["labels"] != -100
        assert torch.equal(item["labels"][targets], torch.tensor(block)[targets[:len(block)]])  # exact: integer ids


def test_both_arms_train_the_same_steps_and_runs_repeat(setting):
    """Catches: arms that see different amounts of data (a static epoch over 10 copies must count as 10 epochs of
    the slice), missing seeds or evaluations, and runs that a seed does not reproduce."""
    _, config, collator, blocks = setting
    settings = experiments.MaskingExperiment(blocks=16, epochs=4, duplicates=4, batch_size=8, lr=2e-3, evaluations=2,
                                             seeds=(0, 1))
    result = experiments.run_masking_experiment(config, collator, blocks, blocks[16:40], settings)
    assert result["settings"]["steps"] == settings.steps == 8
    for arm in ("dynamic", "static"):
        assert [run["seed"] for run in result["runs"][arm]] == [0, 1]
        for run in result["runs"][arm]:
            assert [p["step"] for p in run["eval"]] == [0, 4, 8]
    # same start, exact: one seed's initial weights evaluated on the same batches by the same code (floats included)
    assert result["runs"]["dynamic"][0]["eval"][0] == result["runs"]["static"][0]["eval"][0]
    assert result["runs"]["dynamic"][0]["eval"][-1] != result["runs"]["static"][0]["eval"][-1]
    again = experiments.run_masking_experiment(config, collator, blocks, blocks[16:40],
                                               experiments.MaskingExperiment(**{**asdict(settings), "seeds": (1,)}))
    # exact: seed 1's run again, re-seeded, in this process (same batches, shapes and threads)
    assert again["runs"]["static"][0] == result["runs"]["static"][1]
    mean, spread, n = experiments.final_spread(result, "dynamic", "loss")
    losses = [run["eval"][-1]["loss"] for run in result["runs"]["dynamic"]]
    assert n == 2 and mean == pytest.approx(sum(losses) / 2) and spread == pytest.approx(abs(losses[0] - losses[1])
                                                                                          / 2 ** 0.5)
    # every run's final model scored on every held-out target: the means are its last evaluation's
    targets = len(result["kinds"])
    for arm in ("dynamic", "static"):
        for run in result["runs"][arm]:
            assert len(run["correct"]) == len(run["target_loss"]) == targets
            assert statistics.fmean(run["correct"]) == pytest.approx(run["eval"][-1]["accuracy"], abs=1e-12)
            assert statistics.fmean(run["target_loss"]) == pytest.approx(run["eval"][-1]["loss"], abs=1e-3)
            at_mask = [c for c, k in zip(run["correct"], result["kinds"]) if k == 0]
            assert statistics.fmean(at_mask) == pytest.approx(run["eval"][-1]["accuracy_mask"], abs=1e-12)
    loss = experiments.masking_difference(result, "loss")
    gap = statistics.fmean(statistics.fmean(r["target_loss"]) for r in result["runs"]["dynamic"]) - \
        statistics.fmean(statistics.fmean(r["target_loss"]) for r in result["runs"]["static"])
    assert loss.difference == pytest.approx(gap, abs=1e-9) and loss.low < loss.difference < loss.high
    assert (loss.seeds, loss.items) == (2, targets)
    assert experiments.masking_difference(result, "accuracy_mask").items == result["kinds"].count(0)
    at_mask = experiments.masking_scores(result, "static", "loss_mask")
    assert [len(row) for row in at_mask] == [result["kinds"].count(0)] * 2
    assert at_mask[0] == [x for x, k in zip(result["runs"]["static"][0]["target_loss"], result["kinds"]) if k == 0]
    with pytest.raises(ValueError, match="choose one of"):
        experiments.masking_scores(result, "static", "accuracy")


def test_too_few_blocks_is_a_clear_error(setting):
    _, config, collator, blocks = setting
    with pytest.raises(ValueError, match="lower `blocks`"):
        experiments.run_masking_experiment(config, collator, blocks[:3], blocks[:3],
                                           experiments.MaskingExperiment(blocks=10, seeds=(0,)))


@pytest.mark.parametrize("scale", ["smoke", "cpu"])
def test_cached_results_come_from_the_current_settings(scale):
    """Catches: a committed result that no longer matches the experiment's settings or the recipe of the model it
    trains (the notebook would show a run that the code no longer makes: changing the cpu recipe's dropout makes it
    fail), or one that lacks a seed or the command that made it."""
    result = experiments.load_result(scale)
    assert result is not None, f"run `python -m roberta_from_scratch experiments static-vs-dynamic --scale {scale}`"
    full = experiments.MASKING[scale]["full"]
    expected = {**asdict(full), "steps": full.steps}
    assert {k: (list(v) if isinstance(v, tuple) else v) for k, v in expected.items()} == result["settings"]
    assert result.get("recipe") == experiments.recipe_dict(scale), "the model's recipe changed since the run"
    for arm in ("dynamic", "static"):
        assert [run["seed"] for run in result["runs"][arm]] == list(full.seeds)
        assert all(run["eval"][-1]["step"] == full.steps for run in result["runs"][arm])
    assert result["command"].endswith(f"--scale {scale}")


@pytest.mark.parametrize("loader, file, command", [
    ("load_result", "static_vs_dynamic-cpu.json", "static-vs-dynamic"),
    ("load_finetuning_result", "finetuning-cpu.json", "finetuning"),
    ("load_ablation_result", "beyond_roberta-cpu.json", "beyond-roberta")])
def test_a_foreign_results_file_is_refused_with_the_fix(loader, file, command, tmp_path, monkeypatch):
    """Catches: a results file of another experiment (or none) shown as this one's."""
    monkeypatch.setattr(experiments, "RESULTS_DIR", tmp_path)
    assert getattr(experiments, loader)("cpu") is None
    (tmp_path / file).write_text(json.dumps({"runs": {"other": []}}))
    with pytest.raises(ValueError, match=f"{command} --scale cpu"):
        getattr(experiments, loader)("cpu")


# ----------------------------------------------------------------------------------------------- notebook 06


@pytest.fixture(scope="module")
def classification(python_docs, tmp_path_factory):
    """A tiny 'pretrained' encoder saved like notebook 05's, a tokenizer, and small encoded topic sets."""
    from roberta_from_scratch.finetuning import encode_examples
    from roberta_from_scratch.model import RobertaForMaskedLM

    corpus, topics = python_docs
    tokenizer = ByteLevelBPETokenizer.train(list(corpus["train"]["text"])[:400], vocab_size=400)
    names = topics["train"].features["label"].names
    config = RobertaConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size, hidden_size=32, num_attention_heads=2,
                                       intermediate_size=64, max_position_embeddings=34,
                                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # as at cpu
    torch.manual_seed(0)
    encoder = RobertaForMaskedLM(config)
    with torch.no_grad():  # far from the initialisation, so that 'pretrained' and 'random' really differ
        for p in encoder.parameters():
            p.add_(0.3 * torch.randn_like(p))
    pretrained_dir = tmp_path_factory.mktemp("pretrained")
    encoder.save_pretrained(pretrained_dir)
    splits = [encode_examples(topics[s], tokenizer, 32, len(names)) for s in ("train", "validation", "test")]
    return pretrained_dir, tokenizer, names, splits[0][:96], splits[1][:40], splits[2][:40]


def test_label_subsets_keep_every_class_in_proportion_and_vary_by_seed(classification):
    """Catches: a 5% subset that loses classes (a per-class accuracy of 0 by construction), subsets of the wrong
    size, the same subset for every seed (the spread over seeds would miss the subset's luck), or a seed that
    does not reproduce its subset."""
    from collections import Counter

    _, _, _, train, _, _ = classification
    full = Counter(e["label"] for e in train)
    for fraction in (0.05, 0.25, 0.5):
        subset = experiments.label_subset(train, fraction, seed=0)
        counts = Counter(e["label"] for e in subset)
        assert set(counts) == set(full)
        for label, n in full.items():
            assert counts[label] == max(1, round(fraction * n))
        assert all(e in train for e in subset)
    assert experiments.label_subset(train, 0.25, seed=0) == experiments.label_subset(train, 0.25, seed=0)
    assert experiments.label_subset(train, 0.25, seed=0) != experiments.label_subset(train, 0.25, seed=1)
    assert experiments.label_subset(train, 1.0, seed=3) == train
    with pytest.raises(ValueError, match="fraction"):
        experiments.label_subset(train, 0, seed=0)


def test_bag_of_words_counts_tokens(classification):
    """Catches: features that are presence instead of counts, lose repeated tokens, or skip the log scaling."""
    examples = [{"input_ids": [0, 5, 5, 7, 2], "label": 0}, {"input_ids": [0, 2], "label": 1}]
    features = experiments.bag_of_words(examples, vocab_size=9)
    expected = torch.zeros(2, 9)
    expected[0, [0, 5, 7, 2]] = torch.tensor([1.0, 2.0, 1.0, 1.0])
    expected[1, [0, 2]] = 1.0
    # exact: the same log1p of the same integer counts in a tensor of the same shape
    torch.testing.assert_close(features, torch.log1p(expected), rtol=0, atol=0)


def test_every_finetuning_arm_trains_with_robertas_dropout(classification):
    """Catches: finetuning that inherits the dropout of 0 that the cpu scale pretrains with (the fixture's encoder is
    saved without dropout, like notebook 05's at the cpu scale): every arm must train with RoBERTa's 0.1 in its
    hidden states, its attention and its head, or notebook 06's seeds differ only in their head's start."""
    from roberta_from_scratch.attention import MultiHeadSelfAttention
    from roberta_from_scratch.config import RobertaConfig

    pretrained_dir, tokenizer, names, train, validation, test = classification
    assert RobertaConfig.load(pretrained_dir).hidden_dropout_prob == 0.0
    settings = experiments.FinetuneExperiment(seeds=(0,), epochs=1, batch_size=8, min_steps=1)
    for arm in ("pretrained", "random", "probe"):
        model, _ = experiments.finetune_arm(arm, pretrained_dir, len(names), train[:8], validation[:8], 1e-4, 0,
                                            settings, tokenizer.pad_token_id)
        assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.1}, arm
        assert {m.dropout for m in model.modules() if isinstance(m, MultiHeadSelfAttention)} == {0.1}, arm


def test_the_sweep_keeps_the_validation_argmax_and_the_curve_reuses_it(classification):
    """Catches: a learning rate chosen on the test set, a curve at 100% that is not the kept sweep runs, arms that
    train the wrong parameters (a probe that moves the encoder, a random arm that loads the pretrained weights),
    and small label sets trained for fewer than min_steps steps."""
    pretrained_dir, tokenizer, names, train, validation, test = classification
    settings = experiments.FinetuneExperiment(
        lrs=(("pretrained", (1e-4, 3e-3)), ("random", (1e-4, 3e-3)), ("probe", (1e-3, 1e-2)),
             ("top layer", (1e-4, 3e-3)), ("bag of words", (0.01, 0.2))),
        seeds=(0, 1), epochs=1, batch_size=16, fractions=(0.25, 1.0), min_steps=7, bow_steps=20)
    result = experiments.run_finetuning_experiment(pretrained_dir, tokenizer, train, validation, test, len(names),
                                                   settings)
    assert result["settings"] == experiments.settings_dict(settings)
    for arm, lrs in settings.lrs:
        # exact: statistics.fmean of the same accuracies, as the sweep computes its choice
        means = {lr: statistics.fmean(r["validation"]["accuracy"] for r in result["sweep"][arm][repr(lr)])
                 for lr in lrs}
        assert means[result["chosen"][arm]] == max(means.values())
        assert [r["seed"] for r in result["sweep"][arm][repr(lrs[0])]] == [0, 1]
    for arm in experiments.CURVE_ARMS:
        assert result["label_efficiency"][arm]["1.0"] == result["sweep"][arm][repr(result["chosen"][arm])]
        small = result["label_efficiency"][arm]["0.25"]
        assert all(r["train_examples"] < len(train) for r in small)
        if arm != "bag of words":
            assert all(r["steps"] >= settings.min_steps for r in small)
    json.dumps(result)  # the cache must be writable as JSON

    from roberta_from_scratch.model import RobertaForSequenceClassification

    reference = RobertaForSequenceClassification.from_pretrained(pretrained_dir, num_labels=len(names))
    probe, _ = experiments.finetune_arm("probe", pretrained_dir, len(names), train, validation, 1e-2, 0, settings,
                                        tokenizer.pad_token_id)
    random, _ = experiments.finetune_arm("random", pretrained_dir, len(names), train, validation, 1e-4, 0, settings,
                                         tokenizer.pad_token_id)
    for (name, p), q, r in zip(reference.roberta.named_parameters(), probe.roberta.parameters(),
                               random.roberta.parameters()):
        # exact: a frozen parameter gets no gradient, so the optimizer never touches it (loaded from the same file)
        assert torch.equal(p, q), f"the probe changed the frozen encoder's {name}"
    embeddings = reference.roberta.embeddings.word_embeddings.weight
    assert (embeddings - random.roberta.embeddings.word_embeddings.weight).abs().max() > 0.5, \
        "the random arm started from the pretrained weights"
    with pytest.raises(ValueError, match="unknown arm"):
        experiments.finetune_arm("frozen", pretrained_dir, len(names), train, validation, 1e-3, 0, settings, 1)


@pytest.mark.parametrize("scale", ["smoke", "cpu"])
def test_cached_finetuning_results_come_from_the_current_settings(scale):
    """Catches: notebook 06 showing a sweep that the code no longer makes (other rates, seeds or fractions, or a
    pretrained model of another recipe), a kept rate that is not the validation argmax, or a result without the
    command that made it."""
    result = experiments.load_finetuning_result(scale)
    assert result is not None, f"run `python -m roberta_from_scratch experiments finetuning --scale {scale}`"
    full = experiments.FINETUNING[scale]["full"]
    assert result["settings"] == experiments.settings_dict(full)
    assert result.get("recipe") == experiments.recipe_dict(scale), "the pretrained model's recipe changed since the run"
    for arm, lrs in full.lrs:
        assert set(result["sweep"][arm]) == {repr(lr) for lr in lrs}
        # exact: statistics.fmean of the same accuracies, as the sweep computes its choice (a plain sum rounds
        # otherwise, and could split a tie the sweep saw)
        means = {lr: statistics.fmean(r["validation"]["accuracy"] for r in result["sweep"][arm][repr(lr)])
                 for lr in lrs}
        assert means[result["chosen"][arm]] == max(means.values())
        assert all([r["seed"] for r in runs] == list(full.seeds) for runs in result["sweep"][arm].values())
    for arm in experiments.CURVE_ARMS:
        assert set(result["label_efficiency"][arm]) == {repr(f) for f in full.fractions}
    assert result["command"].endswith(f"finetuning --scale {scale}")
    from roberta_from_scratch.settings import SCALES

    assert SCALES[scale].finetune_lr == result["chosen"]["pretrained"], "the scale's finetuning rate is the sweep's"


# ----------------------------------------------------------------------------------------------- every scale


@pytest.mark.parametrize("experiment, file", [("static-vs-dynamic", "static_vs_dynamic"),
                                              ("finetuning", "finetuning"), ("beyond-roberta", "beyond_roberta")])
def test_a_scale_without_cached_results_gets_the_cpu_scales_labelled(experiment, file, tmp_path, monkeypatch, capsys):
    """Catches: a notebook at the gpu scale that shows no multi-seed evidence (no gpu-scale cache exists), or shows
    the cpu scale's runs without saying whose they are, on what device and by what command; and a scale's own cache
    passed over for another's."""
    import shutil

    real = experiments.RESULTS_DIR
    monkeypatch.setattr(experiments, "RESULTS_DIR", tmp_path)
    shutil.copy(real / f"{file}-cpu.json", tmp_path / f"{file}-cpu.json")
    result = experiments.cached_results(experiment, "gpu")
    printed = capsys.readouterr().out
    device = json.loads((real / f"{file}-cpu.json").read_text())["device"]  # as the run recorded it
    assert result["scale"] == "cpu" and result["device"] == device and "CPU" in device
    assert result["label"] == printed.strip()
    for words in ("cached results of the cpu scale", f"computed on {device}",
                  f"`python -m roberta_from_scratch experiments {experiment} --scale cpu`",
                  "the gpu scale has no cached results of its own", f"{experiment} --scale gpu`"):
        assert words in printed, words
    assert result["runs" if experiment != "finetuning" else "sweep"]  # the evidence itself comes along
    own = experiments.cached_results(experiment, "cpu")
    assert own["scale"] == "cpu" and "has no cached results" not in own["label"]
    gpu = json.loads((tmp_path / f"{file}-cpu.json").read_text())
    gpu.update(command=gpu["command"].replace("--scale cpu", "--scale gpu"), device="NVIDIA T4")
    (tmp_path / f"{file}-gpu.json").write_text(json.dumps(gpu))
    assert experiments.cached_results(experiment, "gpu", verbose=False)["scale"] == "gpu"
    for name in (f"{file}-cpu.json", f"{file}-gpu.json"):
        (tmp_path / name).unlink()
    capsys.readouterr()
    assert experiments.cached_results(experiment, "gpu") is None
    assert f"{experiment} --scale gpu`" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown experiment"):
        experiments.cached_results("static", "cpu")


def test_the_gpu_scale_takes_its_rates_batches_and_steps_from_its_recipe():
    """Catches: settings written for the cpu scale used at the gpu scale (notebook 06 finetuning at 1e-3 while the
    scale's finetune_lr says 1e-4; notebook 05's live masking run with the cpu's learning rate and more steps than
    the main pretraining), and a sweep whose grid misses its scale's own finetuning rate."""
    from roberta_from_scratch.settings import SCALES

    for name, scale in SCALES.items():
        recipe = scale.pretrain
        for kind in ("live", "full"):
            masking = experiments.MASKING[name][kind]
            assert (masking.batch_size, masking.lr) == (recipe.batch_size, recipe.lr), (name, kind)
            assert scale.finetune_lr in experiments.FINETUNING[name][kind].arm_lrs("pretrained"), (name, kind)
        if name != "smoke":  # both arms of the live masking run: a small share of notebook 05's main run
            assert 2 * experiments.MASKING[name]["live"].steps <= recipe.steps / 10, name
    gpu = SCALES["gpu"]
    for kind in ("live", "full"):
        grid = experiments.FINETUNING["gpu"][kind].arm_lrs("pretrained")
        assert grid[len(grid) // 2] == gpu.finetune_lr  # the live runs' rate when no gpu sweep exists
        assert experiments.FINETUNING["gpu"][kind].epochs == gpu.finetune_epochs
        ladder = experiments.ABLATION["gpu"][kind]
        assert (ladder.batch_size, ladder.lr) == (gpu.pretrain.batch_size, gpu.pretrain.lr)
    live = experiments.ABLATION["gpu"]["live"]
    arms = len(experiments.ablation_arms(live)) + 1  # and the combination
    assert arms * live.baseline_steps <= gpu.pretrain.steps  # the live ladder: less than the main run
    assert experiments.rates_around(1e-3) == (3e-4, 1e-3, 3e-3) and experiments.rates_around(1e-4) == (3e-5, 1e-4, 3e-4)


@pytest.mark.parametrize("name", ["smoke", "cpu", "gpu"])
def test_live_runs_are_the_tables_and_a_rehearsal_cuts_every_loop(name, monkeypatch):
    """Catches: a notebook's live run that a rehearsal (RFS_REHEARSAL=1) leaves at full length (the gpu scale's
    masking run, ladder or finetuning on a CPU), or that changes what the run is (learning rates, a grid, the
    masking rates it keeps) rather than how long it runs; outside a rehearsal, a live run other than the table's."""
    from roberta_from_scratch import settings

    monkeypatch.delenv(settings.REHEARSAL_ENV, raising=False)
    scale = settings.get_scale(name)
    masking, finetuning, ladder = (experiments.live_settings(e, scale)
                                   for e in ("static-vs-dynamic", "finetuning", "beyond-roberta"))
    assert masking == experiments.MASKING[name]["live"] and ladder == experiments.ABLATION[name]["live"]
    assert finetuning == experiments.FINETUNING[name]["live"]
    monkeypatch.setenv(settings.REHEARSAL_ENV, "1")
    cut = settings.get_scale(name)
    masking, finetuning, ladder = (experiments.live_settings(e, cut)
                                   for e in ("static-vs-dynamic", "finetuning", "beyond-roberta"))
    assert masking.steps == 1 and masking.lr == experiments.MASKING[name]["live"].lr and masking.evaluations == 1
    assert finetuning.epochs == 1 and finetuning.min_steps <= 3 and finetuning.bow_steps <= 3
    assert finetuning.lrs == experiments.FINETUNING[name]["live"].lrs and len(finetuning.seeds) == 1
    assert ladder.baseline_steps <= 2 and ladder.timing_rounds == ladder.timing_steps == 1
    assert len(experiments.ablation_arms(ladder)) <= 3 and ladder.lr == experiments.ABLATION[name]["live"].lr
    with pytest.raises(ValueError, match="unknown experiment"):
        experiments.live_settings("masking", cut)


def test_every_scales_masking_slice_fits_its_corpus(python_docs, python_docs_dir, tmp_path, monkeypatch):
    """Catches: a static-against-dynamic run that asks for more training blocks than its scale's corpus packs into
    (the gpu scale's 128-token blocks are fewer than the cpu's 64-token ones): the command line, or the notebook on
    Colab, would stop with an error after the pretraining it needs."""
    import shutil

    from roberta_from_scratch import data

    shutil.copytree(python_docs_dir, tmp_path, dirs_exist_ok=True)  # the corpus, already built
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    for name in ("smoke", "cpu", "gpu"):
        _, _, _, train_blocks, _ = experiments.course_setting(name)
        for kind in ("live", "full"):
            assert experiments.MASKING[name][kind].blocks <= len(train_blocks), (name, kind, len(train_blocks))


def test_finetuning_margins_pair_the_runs_seed_by_seed():
    """Catches: a margin that pairs runs of different seeds, or reads another score than which examples were right."""
    from roberta_from_scratch.stats import paired_bootstrap

    a = [{"seed": s, "test": {"correct": [1, 0, 1, s % 2]}} for s in (0, 1, 2)]
    b = [{"seed": s, "test": {"correct": [0, 0, 1, 1]}} for s in (0, 1, 2)]
    ours = experiments.test_difference(a, b)
    expected = paired_bootstrap([r["test"]["correct"] for r in a], [r["test"]["correct"] for r in b])
    assert (ours.difference, ours.low, ours.high) == (expected.difference, expected.low, expected.high)  # exact: same call
    assert ours.difference == pytest.approx((7 - 6) / 12)
    with pytest.raises(ValueError, match="same seeds"):
        experiments.test_difference(a, b[::-1])
