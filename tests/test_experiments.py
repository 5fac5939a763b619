"""Experiments too long for a notebook (static against dynamic masking): the arms, the runs, the cached results."""

import json
from dataclasses import asdict

import pytest
import torch

from roberta_from_scratch import experiments
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
        assert torch.equal(a["labels"], b["labels"]) and torch.equal(a["input_ids"], b["input_ids"])
    copies = [static[i]["labels"] for i in range(4)]  # copies of block 0
    assert len({tuple(c.tolist()) for c in copies}) > 1, "the copies of a block must be masked differently"
    for item, block in zip(static[::4], blocks[:6]):
        targets = item["labels"] != -100
        assert torch.equal(item["labels"][targets], torch.tensor(block)[targets[:len(block)]])


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
    assert result["runs"]["dynamic"][0]["eval"][0] == result["runs"]["static"][0]["eval"][0]  # same start
    assert result["runs"]["dynamic"][0]["eval"][-1] != result["runs"]["static"][0]["eval"][-1]
    again = experiments.run_masking_experiment(config, collator, blocks, blocks[16:40],
                                               experiments.MaskingExperiment(**{**asdict(settings), "seeds": (1,)}))
    assert again["runs"]["static"][0] == result["runs"]["static"][1]
    mean, spread, n = experiments.final_spread(result, "dynamic", "loss")
    losses = [run["eval"][-1]["loss"] for run in result["runs"]["dynamic"]]
    assert n == 2 and mean == pytest.approx(sum(losses) / 2) and spread == pytest.approx(abs(losses[0] - losses[1])
                                                                                          / 2 ** 0.5)


def test_too_few_blocks_is_a_clear_error(setting):
    _, config, collator, blocks = setting
    with pytest.raises(ValueError, match="lower `blocks`"):
        experiments.run_masking_experiment(config, collator, blocks[:3], blocks[:3],
                                           experiments.MaskingExperiment(blocks=10, seeds=(0,)))


@pytest.mark.parametrize("scale", ["smoke", "cpu"])
def test_cached_results_come_from_the_current_settings(scale):
    """Catches: a committed result that no longer matches the experiment's settings (the notebook would show a run
    that the code no longer makes), or one that lacks a seed or the command that made it."""
    result = experiments.load_result(scale)
    assert result is not None, f"run `python -m roberta_from_scratch.experiments static-vs-dynamic --scale {scale}`"
    full = experiments.MASKING[scale]["full"]
    expected = {**asdict(full), "steps": full.steps}
    assert {k: (list(v) if isinstance(v, tuple) else v) for k, v in expected.items()} == result["settings"]
    for arm in ("dynamic", "static"):
        assert [run["seed"] for run in result["runs"][arm]] == list(full.seeds)
        assert all(run["eval"][-1]["step"] == full.steps for run in result["runs"][arm])
    assert result["command"].endswith(f"--scale {scale}")


def test_a_foreign_results_file_is_refused_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(experiments, "RESULTS_DIR", tmp_path)
    assert experiments.load_result("cpu") is None
    (tmp_path / "static_vs_dynamic-cpu.json").write_text(json.dumps({"runs": {"other": []}}))
    with pytest.raises(ValueError, match="static-vs-dynamic --scale cpu"):
        experiments.load_result("cpu")


def test_notebook_07_gets_a_model_of_at_least_four_layers_and_heads(tmp_path, monkeypatch):
    """Catches: notebook 07 analysing the 2 x 2 recipe model (four heads, nothing to discover), an override of
    layers or heads that the command line ignores, or a cache that retrains on every call."""
    from roberta_from_scratch import data, pretrain
    from roberta_from_scratch.model import RobertaForMaskedLM

    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    final, tokenizer = pretrain.course_attention_model("smoke", verbose=False)
    model = RobertaForMaskedLM.from_pretrained(final)
    assert model.config.num_hidden_layers >= 4 and model.config.num_attention_heads >= 4
    assert model.config.vocab_size == tokenizer.vocab_size
    written = (final / "model.safetensors").stat().st_mtime_ns
    again, _ = pretrain.course_attention_model("smoke", verbose=False)
    assert again == final and (final / "model.safetensors").stat().st_mtime_ns == written
