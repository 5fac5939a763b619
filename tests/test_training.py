"""The pretraining loop: optimizer groups, schedule, accumulation, exact resume, crash safety, faults."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from roberta_from_scratch.config import RobertaConfig
from roberta_from_scratch.masking import DataCollatorForMLM
from roberta_from_scratch.model import RobertaForMaskedLM
from roberta_from_scratch.tokenizer import ByteLevelBPETokenizer
from roberta_from_scratch.training import (
    StepBatches,
    Trainer,
    TrainingConfig,
    latest_checkpoint,
    linear_schedule,
    parameter_groups,
)

from conftest import ROOT


@pytest.fixture(scope="module")
def setup(python_docs):
    from roberta_from_scratch.data import pack_dataset

    corpus, _ = python_docs
    tokenizer = ByteLevelBPETokenizer.train(list(corpus["train"]["text"])[:800], vocab_size=400)
    blocks = list(pack_dataset(corpus["train"].select(range(800)), tokenizer, 32)["input_ids"])
    eval_blocks = list(pack_dataset(corpus["validation"], tokenizer, 32)["input_ids"])[:32]
    return tokenizer, blocks, eval_blocks


def tiny_model(tokenizer, seed=0, **overrides):
    torch.manual_seed(seed)
    config = RobertaConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size, max_position_embeddings=34,
                                       hidden_size=32, intermediate_size=64, **overrides)
    return RobertaForMaskedLM(config)


def trainer_for(setup, tmp_path=None, seed=0, **cfg):
    tokenizer, blocks, eval_blocks = setup
    defaults = dict(max_steps=6, batch_size=8, lr=1e-3, warmup_steps=2, eval_every=3, progress=False, device="cpu",
                    checkpoint_dir=None if tmp_path is None else str(tmp_path))
    model = tiny_model(tokenizer, seed=seed)
    return Trainer(model, blocks, DataCollatorForMLM(tokenizer), TrainingConfig(**{**defaults, **cfg}), eval_blocks)


def test_no_weight_decay_on_biases_and_layernorm():
    model = RobertaForMaskedLM(RobertaConfig.from_preset("tiny", vocab_size=300))
    decay, no_decay = parameter_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.dim() == 2 and "norm" not in names[id(p)] for p in decay["params"])
    assert {names[id(p)] for p in no_decay["params"]} >= {"lm_head.bias", "roberta.embeddings.norm.weight",
                                                          "roberta.layers.0.ffn_in.bias"}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0


def test_linear_warmup_then_linear_decay():
    values = [linear_schedule(s, 10, 100) for s in range(101)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0) and values[10] == pytest.approx(1.0)
    assert values[55] == pytest.approx(0.5) and values[100] == 0.0
    assert all(a <= b for a, b in zip(values[:10], values[1:10]))


def gradients_of_one_step(setup, **cfg):
    trainer = trainer_for(setup, max_grad_norm=None, **cfg)
    trainer.model.eval()  # no dropout: the same function every way
    trainer.compute_gradients()
    return {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("k", [2, 4, 8])
def test_accumulated_micro_batches_give_the_gradient_of_one_big_batch(setup, k):
    """k micro-batches of 8/k sequences, accumulated, equal one batch of 8 (gradients within 1e-6)."""
    whole = gradients_of_one_step(setup, batch_size=8)
    accumulated = gradients_of_one_step(setup, batch_size=8, micro_batch_size=8 // k)
    assert whole.keys() == accumulated.keys() and len(whole) > 10
    for name in whole:
        torch.testing.assert_close(accumulated[name], whole[name], rtol=0, atol=1e-6, msg=name)


def test_activation_checkpointing_changes_memory_not_results(setup):
    plain = gradients_of_one_step(setup, batch_size=8)
    recomputed = gradients_of_one_step(setup, batch_size=8, activation_checkpointing=True)
    for name in plain:
        torch.testing.assert_close(recomputed[name], plain[name], rtol=0, atol=1e-6, msg=name)
    # with dropout on, the recomputation replays the same dropout masks (the random state is saved and restored)
    tokenizer, *_ = setup
    ids = torch.randint(5, tokenizer.vocab_size, (2, 16))
    grads = []
    for enabled in (False, True):
        model = tiny_model(tokenizer).train()
        model.set_activation_checkpointing(enabled)
        torch.manual_seed(7)
        model(ids, labels=ids).loss.backward()
        grads.append(model.lm_head.dense.weight.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=1e-6)


def test_resumed_run_ends_with_the_same_weights(setup, tmp_path):
    straight = trainer_for(setup)
    straight.train()
    interrupted = trainer_for(setup, tmp_path / "a")
    interrupted.train(until=3)
    interrupted.save_checkpoint()
    resumed = trainer_for(setup, tmp_path / "b", seed=123)  # a different initialisation, overwritten by the load
    resumed.load_checkpoint(tmp_path / "a")
    assert resumed.step == 3
    resumed.train()
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert [e["step"] for e in resumed.history.eval] == [e["step"] for e in straight.history.eval]


def test_data_order_is_a_function_of_the_step(setup):
    _, blocks, _ = setup
    a, b = StepBatches(blocks, 8, seed=0), StepBatches(blocks, 8, seed=0)
    assert a(5) == b(5) and a(0) != a(1)
    assert sorted(a._order[1].tolist()) == list(range(len(blocks)))  # each epoch is a permutation of the blocks
    assert a(a.steps_per_epoch) != a(0)  # and the next epoch is shuffled anew


def test_checkpoints_are_whole_or_absent(setup, tmp_path):
    trainer = trainer_for(setup, tmp_path, checkpoint_every=2, keep_checkpoints=2)
    trainer.train()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["step-0000004", "step-0000006"]
    (tmp_path / ".tmp-step-0000008-1").mkdir()  # a save that crashed half-way
    assert latest_checkpoint(tmp_path).name == "step-0000006"
    assert (tmp_path / "step-0000006" / "model.safetensors").is_file()
    loaded = RobertaForMaskedLM.from_pretrained(tmp_path / "step-0000006")  # a checkpoint is a model directory
    assert torch.equal(loaded.lm_head.bias, trainer.model.lm_head.bias)


def test_a_killed_run_resumes_and_completes(tmp_path):
    env = {**os.environ, "RFS_DATA_DIR": str(tmp_path / "data"), "RFS_SCALE": "smoke", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "roberta_from_scratch.pretrain", "--scale", "smoke", "--steps", "400",
               "--checkpoint-every", "5", "--eval-every", "1000", "--output-dir", str(tmp_path / "run"),
               "--no-progress", "--device", "cpu"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / "run" / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and (latest_checkpoint(checkpoints) is None or
                                      latest_checkpoint(checkpoints).name < "step-0000010"):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = latest_checkpoint(checkpoints)
    assert killed_at is not None, "no checkpoint was written before the kill"
    result = subprocess.run(command[:6] + ["30"] + command[7:] + ["--resume"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"resumed from {killed_at}" in result.stdout
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()
    assert latest_checkpoint(checkpoints).name == "step-0000030"


def test_faults_get_clear_errors(setup, tmp_path):
    with pytest.raises(ValueError, match="batch_size=10 is not a multiple of micro_batch_size=4"):
        TrainingConfig(max_steps=1, batch_size=10, micro_batch_size=4)
    trainer = trainer_for(setup, lr=1e3)
    trainer.model.roberta.embeddings.word_embeddings.weight.data.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="at step 0.*lower the learning rate.*another precision"):
        trainer.train()
    good = trainer_for(setup, tmp_path / "good")
    good.save_checkpoint()
    tokenizer, blocks, eval_blocks = setup
    other = Trainer(tiny_model(tokenizer, num_hidden_layers=3), blocks, DataCollatorForMLM(tokenizer),
                    TrainingConfig(max_steps=2, batch_size=8, progress=False, device="cpu"), eval_blocks)
    with pytest.raises(ValueError, match="another model config: num_hidden_layers: checkpoint 2, this run 3"):
        other.load_checkpoint(tmp_path / "good")

    def out_of_memory():
        raise torch.OutOfMemoryError("CUDA out of memory")

    oom = trainer_for(setup)
    oom.train_step = out_of_memory
    with pytest.raises(RuntimeError, match="smaller micro_batch_size"):
        oom.train()


def test_training_learns_something(setup):
    trainer = trainer_for(setup, max_steps=40, lr=3e-3, warmup_steps=4, eval_every=40)
    history = trainer.train()
    first, last = history.eval[0], history.eval[-1]
    assert last["loss"] < first["loss"] - 0.5, (first, last)  # from the uniform guess, log(400) = 6.0, downwards
    # at least the most frequent tokens are learned: from 1 in 125 held-out targets at random init to 5 (40 steps)
    assert last["accuracy"] >= first["accuracy"] + 0.025, (first, last)
