"""The pretraining loop: optimizer groups, schedule, accumulation, exact resume, crash safety, faults."""

import os
import re
import shutil
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
    STATE_FILE,
    StepBatches,
    Trainer,
    checkpoints,
    TrainingConfig,
    latest_checkpoint,
    linear_schedule,
    parameter_groups,
)

from conftest import ROOT


@pytest.fixture(scope="module")
def setup(python_docs):
    from roberta_from_scratch.packing import pack_dataset

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
    assert values[55] == pytest.approx(0.5) and values[100] == 0.0  # exact: (100 - 100) / 90
    assert all(a <= b for a, b in zip(values[:10], values[1:10]))


def test_the_logged_learning_rate_is_the_one_each_step_used(setup):
    """Catches: history recording the schedule's rate after it moved on (the next step's), so that step 1 showed
    2/warmup of the peak instead of 1/warmup, and the last step showed 0; the loop of notebook 06 as well."""
    trainer = trainer_for(setup, max_steps=6, warmup_steps=2, lr=1e-3)
    trainer.train()
    expected = [1e-3 * linear_schedule(s, 2, 6) for s in range(6)]
    assert [r["lr"] for r in trainer.history.train] == pytest.approx(expected)
    assert trainer.history.train[-1]["lr"] > 0


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
    # Not bit for bit: other shapes, and the micro-batches' gradients summed in another order; fp32 rounding of
    # gradients of size ~1e-2 stays far below 1e-6.
    for name in whole:
        torch.testing.assert_close(accumulated[name], whole[name], rtol=0, atol=1e-6, msg=name)


def test_activation_checkpointing_changes_memory_not_results(setup):
    """Catches: recomputation that changes the gradients, that replays other dropout masks than the first pass
    drew, or that never happens (checkpointing is off in eval mode, so the model trains here, and each layer must
    run twice per step). The first version of this test ran in eval mode and compared plain with plain."""
    tokenizer, *_ = setup
    ids = torch.randint(5, tokenizer.vocab_size, (2, 16))
    for dropout in (0.0, 0.1):  # without dropout, then with it (the random state is saved and restored)
        grads, calls = [], []
        for enabled in (False, True):
            model = tiny_model(tokenizer, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout).train()
            model.set_activation_checkpointing(enabled)
            count, layer = [0], model.roberta.layers[0]
            original = layer.forward

            def counted(*args, **kwargs):  # (module hooks do not fire when checkpointing recomputes)
                count[0] += 1
                return original(*args, **kwargs)

            layer.forward = counted
            torch.manual_seed(7)
            model(ids, labels=ids).loss.backward()
            grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
            calls.append(count[0])
        assert calls == [1, 2], f"layer 0 ran {calls} times (plain, checkpointed): no recomputation"
        assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
        # within fp32 rounding (1e-6): the recomputed forward runs under checkpoint's own autograd bookkeeping
        for name in grads[0]:
            torch.testing.assert_close(grads[1][name], grads[0][name], rtol=0, atol=1e-6, msg=name)


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
    # Exact: the resumed run repeats the straight run's operations (same shapes, order, batches, masks and random
    # state) in the same process, so every bit must match.
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert [e["step"] for e in resumed.history.eval] == [e["step"] for e in straight.history.eval]


def test_checkpoints_hold_the_real_vocabulary_and_resume_exactly_with_any_padding(setup, tmp_path):
    """Catches: the padding written into checkpoints (files transformers cannot read, and a resume with another
    padding failing on the optimizer's shapes), the Adam moments of the real rows lost or shifted when they are cut
    and padded again, and padding that changes what is learned. 400 tokens: padded to 448 by default."""
    from safetensors.torch import load_file

    straight = trainer_for(setup, pad_vocab_multiple=1)
    straight.train()
    assert straight.model.lm_head.bias.shape == (400,)
    for before, after in ((64, 1), (1, 64)):
        interrupted = trainer_for(setup, tmp_path / f"{before}", pad_vocab_multiple=before)
        assert interrupted.model.lm_head.bias.shape == (448 if before == 64 else 400,)
        interrupted.train(until=3)
        saved = interrupted.save_checkpoint()
        assert load_file(saved / "model.safetensors")["lm_head.bias"].shape == (400,)
        moments = torch.load(saved / STATE_FILE, weights_only=True)["optimizer"]["state"]
        assert moments["lm_head.bias"]["exp_avg_sq"].shape == (400,)
        resumed = trainer_for(setup, tmp_path / f"{before}-{after}", seed=123, pad_vocab_multiple=after)
        resumed.load_checkpoint(saved)
        resumed.train()
        vocab = resumed.model.config.vocab_size
        # Not bit for bit: a 448-row decoder against a 400-row one, which BLAS may block and sum in another order;
        # after 6 steps the weights (size ~0.1) differ by fp32 rounding, far below 1e-6.
        for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
            torch.testing.assert_close(b[:vocab] if b.dim() and b.size(0) != a.size(0) else b, a, rtol=0,
                                       atol=1e-6, msg=name)
        assert not resumed.model.lm_head.bias[vocab:].any()  # the padding never trains
        assert [r["loss"] for r in resumed.history.train] == pytest.approx(
            [r["loss"] for r in straight.history.train], abs=1e-6)


def test_batches_built_by_dataloader_workers_train_and_resume_exactly_as_the_main_process(setup, tmp_path):
    """Catches: workers that build other batches than the main process (their own masking streams, another data
    order, steps out of turn), or a loader that restarts at step 0 after a resume: weights and every logged loss
    must be bit for bit those of the run that builds each batch itself."""
    straight = trainer_for(setup)
    straight.train()
    workers = trainer_for(setup, num_workers=2)
    workers.train()
    interrupted = trainer_for(setup, tmp_path / "a", num_workers=2)
    interrupted.train(until=3)
    interrupted.save_checkpoint()
    resumed = trainer_for(setup, tmp_path / "b", seed=123, num_workers=2)
    resumed.load_checkpoint(tmp_path / "a")
    resumed.train()
    # Exact: a worker builds the same CPU batch the main process would (a pure function of (seed, step)); the
    # training arithmetic is the same operations on the same tensors.
    for run in (workers, resumed):
        for (name, a), b in zip(straight.model.state_dict().items(), run.model.state_dict().values()):
            assert torch.equal(a, b), name
    assert [r["loss"] for r in workers.history.train] == [r["loss"] for r in straight.history.train]
    assert [r["loss"] for r in resumed.history.train] == [r["loss"] for r in straight.history.train]  # (restored)


def test_data_order_is_a_function_of_the_step(setup):
    _, blocks, _ = setup
    a, b = StepBatches(blocks, 8, seed=0), StepBatches(blocks, 8, seed=0)
    assert a(5) == b(5) and a(0) != a(1)
    assert sorted(a._order[1].tolist()) == list(range(len(blocks)))  # each epoch is a permutation of the blocks
    assert a(a.steps_per_epoch) != a(0)  # and the next epoch is shuffled anew


def test_checkpoints_are_whole_or_absent(setup, tmp_path, monkeypatch):
    """Catches: a save interrupted after its files are written but before the rename that makes it the checkpoint
    (a crash, a full disk) that leaves a half checkpoint under a step name, damages the earlier ones, or leaves its
    temporary folder for ever (the next start must remove what a dead process left behind)."""
    import roberta_from_scratch.checkpoints as checkpoints_module

    trainer = trainer_for(setup, tmp_path, checkpoint_every=2, keep_checkpoints=2, max_steps=8)
    trainer.train(until=6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-0000004", "step-0000006"]
    before = {p.name: (p / "model.safetensors").read_bytes() for p in tmp_path.iterdir()}

    def crash(directory):
        raise KeyboardInterrupt("the power went out")

    monkeypatch.setattr(checkpoints_module, "fsync_tree", crash)  # every file of step 8 written, the rename not yet done
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    monkeypatch.undo()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [f".tmp-step-0000008-{os.getpid()}", "step-0000004", "step-0000006"], left
    assert latest_checkpoint(tmp_path).name == "step-0000006"
    assert {p.name: (p / "model.safetensors").read_bytes() for p in tmp_path.glob("step-*")} == before
    loaded = RobertaForMaskedLM.from_pretrained(tmp_path / "step-0000006")  # a checkpoint is a model directory
    assert loaded.lm_head.bias.shape == (trainer.model.config.vocab_size,)  # the real rows, not the padded ones

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".tmp-step-0000008-{int(dead.stdout)}"  # as if another process had crashed while saving
    os.rename(tmp_path / f".tmp-step-0000008-{os.getpid()}", stale)
    trainer_for(setup, tmp_path, checkpoint_every=2)  # the next start cleans up
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-0000004", "step-0000006"]


def test_a_damaged_checkpoint_falls_back_to_the_newest_intact_one(setup, tmp_path):
    """Catches: a truncated training state that fails with OSError from inside torch, garbage in config.json that
    fails with a bare JSONDecodeError, and no fallback: the newest intact checkpoint must be used, with a warning
    naming the damaged file, and the resumed run must still end with the uninterrupted run's weights."""
    straight = trainer_for(setup, max_steps=8)
    straight.train()
    run = trainer_for(setup, tmp_path, checkpoint_every=2, keep_checkpoints=4, max_steps=8)
    run.train(until=8)
    state = tmp_path / "step-0000008" / STATE_FILE
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])  # truncated
    weights = tmp_path / "step-0000006" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    (tmp_path / "step-0000004" / "config.json").write_text('{"hidden_size": 32,')  # cut short

    with pytest.raises(ValueError, match=f"{STATE_FILE}: cannot be read.*truncated"):
        trainer_for(setup).load_checkpoint(tmp_path / "step-0000008")  # one folder named: no fallback, the reason
    resumed = trainer_for(setup, tmp_path, seed=7, checkpoint_every=2, keep_checkpoints=4, max_steps=8)
    with pytest.warns(UserWarning) as caught:
        loaded = resumed.load_checkpoint(tmp_path)
    assert loaded.name == "step-0000002" and resumed.step == 2
    messages = [str(w.message) for w in caught]
    assert len(messages) == 3, messages
    assert STATE_FILE in messages[0] and "truncated" in messages[0]
    assert "model.safetensors" in messages[1] and "config.json" in messages[2] and "not valid JSON" in messages[2]
    resumed.train()  # (its saves replace the damaged checkpoints)
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name  # exact: the same operations, batches and random state as the straight run

    (tmp_path / "step-0000004" / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="config.json: holds a JSON list, not an object"):
        trainer_for(setup).load_checkpoint(tmp_path / "step-0000004")
    good_state = torch.load(tmp_path / "step-0000006" / STATE_FILE, weights_only=True)
    for bad, message in [(torch.zeros(3), "holds a Tensor, not a training state"),
                         ({**good_state, "history": "{not json"}, "its history is not valid JSON"),
                         ({**good_state, "rank_rng": [{"cpu": torch.zeros(3)}]}, "rank_rng"),  # float, not a state
                         ({**good_state, "rank_rng": "x"}, "rank_rng"),
                         ({**good_state, "run_id": 7}, "its run_id is not a text")]:
        torch.save(bad, tmp_path / "step-0000006" / STATE_FILE)  # hostile or garbled, but loadable
        with pytest.raises(ValueError, match=message):
            trainer_for(setup).load_checkpoint(tmp_path / "step-0000006")
    for folder in tmp_path.glob("step-*"):
        (folder / "config.json").write_text("garbage")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no intact checkpoint in"):
        trainer_for(setup).load_checkpoint(tmp_path)


def test_a_killed_run_resumes_and_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, python_docs_dir, python_docs):
    """Catches: a run killed with SIGKILL (no chance to clean up) that cannot resume, or that resumes into other
    weights than the run would have reached (data order, masks, optimizer or random state not restored). The kill
    lands while the run is stopped (SIGSTOP) after its step-10 checkpoint, so a fast run cannot finish first."""
    from safetensors.torch import load_file

    shutil.copytree(python_docs_dir / "cache", tmp_path / "data" / "cache")  # the corpus, built once per session
    env = {**os.environ, "RFS_DATA_DIR": str(tmp_path / "data"), "RFS_SCALE": "smoke", "PYTHONUNBUFFERED": "1"}

    def command(out):
        return [sys.executable, "-m", "roberta_from_scratch", "pretrain", "--scale", "smoke", "--steps", "30",
                "--checkpoint-every", "5", "--eval-every", "1000", "--output-dir", str(out), "--no-progress",
                "--device", "cpu"]

    straight = subprocess.run(command(tmp_path / "straight"), cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)
    assert straight.returncode == 0, straight.stderr[-2000:]
    for attempt in range(3):  # the run may (rarely) finish between two polls: try again in a new folder
        out = tmp_path / f"killed-{attempt}"
        process = subprocess.Popen(command(out), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        checkpoints = out / "checkpoints"
        deadline = time.time() + 120
        while time.time() < deadline and process.poll() is None and (
                latest_checkpoint(checkpoints) is None or latest_checkpoint(checkpoints).name < "step-0000010"):
            time.sleep(0.01)
        process.send_signal(signal.SIGSTOP)
        finished = latest_checkpoint(checkpoints) is not None and latest_checkpoint(checkpoints).name == "step-0000030"
        process.send_signal(signal.SIGKILL)
        process.wait()
        if not finished:
            break
    killed_at = latest_checkpoint(checkpoints)
    assert killed_at is not None and killed_at.name < "step-0000030", killed_at
    result = subprocess.run(command(out) + ["--resume"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"resumed from {killed_at}" in result.stdout
    assert latest_checkpoint(checkpoints).name == "step-0000030"
    ours = load_file(out / "final" / "model.safetensors")
    theirs = load_file(tmp_path / "straight" / "final" / "model.safetensors")
    assert ours.keys() == theirs.keys()
    # Exact: both runs execute the same command on the same machine with the same environment (thread count
    # included), and the resume restores every state the arithmetic depends on.
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name


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
    oom.step_on_device = out_of_memory
    with pytest.raises(RuntimeError, match="smaller micro_batch_size"):
        oom.train()


def test_training_learns_something(setup):
    trainer = trainer_for(setup, max_steps=40, lr=3e-3, warmup_steps=4, eval_every=40)
    history = trainer.train()
    first, last = history.eval[0], history.eval[-1]
    assert last["loss"] < first["loss"] - 0.5, (first, last)  # from the uniform guess, log(400) = 6.0, downwards
    # at least the most frequent tokens are learned: from 1 in 125 held-out targets at random init to 5 (40 steps)
    assert last["accuracy"] >= first["accuracy"] + 0.025, (first, last)


@pytest.mark.parametrize("bad", [dict(keep_checkpoints=0), dict(keep_checkpoints=-1), dict(lr=0), dict(lr=-1e-3),
                                 dict(warmup_steps=-5), dict(eval_every=0), dict(micro_batch_size=0),
                                 dict(pad_vocab_multiple=0), dict(pad_vocab_multiple=True)])
def test_nonsensical_settings_are_refused_where_the_config_is_made(bad):
    """Catches: keep_checkpoints=0 silently keeping every checkpoint (``[:-0]`` is empty), a learning rate of 0
    that trains nothing, a negative warm-up, eval_every=0 failing with a ZeroDivisionError in the loop, and a
    vocabulary padded to a multiple of 0 (a ZeroDivisionError when the model is built)."""
    with pytest.raises(ValueError, match=next(iter(bad))):
        TrainingConfig(max_steps=10, batch_size=8, **bad)


def test_mfu_counts_the_peak_of_every_process(setup, monkeypatch):
    """Catches: MFU overstated by the number of processes (the tokens per second are the whole step's, over all
    processes, and were divided by one device's peak)."""
    from roberta_from_scratch import training
    from roberta_from_scratch.distributed import World

    monkeypatch.setattr(training, "peak_flops", lambda device: 1e12)
    assert trainer_for(setup).peak == 1e12
    monkeypatch.setattr(training, "world", lambda: World(rank=0, world_size=4))
    assert trainer_for(setup, batch_size=8).peak == 4e12


def test_gradient_sync_is_skipped_under_torch_compile(tmp_path):
    """Catches: accumulation that all-reduces on every micro-batch under torch.compile (the compiled module is not
    the DDP module, so no_sync() was never entered)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from roberta_from_scratch.distributed import gradient_sync

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(torch.nn.Linear(3, 3))
        compiled = torch.compile(ddp)  # not called: nothing is compiled
        for forward in (ddp, compiled):
            with gradient_sync(forward, ddp, sync=False):
                assert ddp.require_backward_grad_sync is False
            assert ddp.require_backward_grad_sync is True
            with gradient_sync(forward, ddp, sync=True):
                assert ddp.require_backward_grad_sync is True
    finally:
        dist.destroy_process_group()


def resumable(setup, tmp_path, **cfg):
    tokenizer, blocks, eval_blocks = setup
    base = dict(max_steps=6, batch_size=8, lr=1e-3, warmup_steps=2, eval_every=3, progress=False, device="cpu",
                checkpoint_dir=str(tmp_path))
    return Trainer(tiny_model(tokenizer), blocks, DataCollatorForMLM(tokenizer), TrainingConfig(**{**base, **cfg}),
                   eval_blocks)


def test_resume_refuses_other_settings_and_allows_more_steps_only_explicitly(setup, tmp_path):
    """Catches: resuming with another seed or batch size (a silently different data order), another learning
    rate silently ignored, or more steps without saying so; settings that do not change what is learned (the
    micro-batch size) stay free."""
    first = resumable(setup, tmp_path)
    first.train(until=3)
    first.save_checkpoint()
    for change in (dict(seed=1), dict(batch_size=16), dict(lr=2e-3), dict(warmup_steps=0), dict(max_steps=8)):
        with pytest.raises(ValueError, match=f"{next(iter(change))}: checkpoint"):
            resumable(setup, tmp_path, **change).load_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="max_steps"):  # fewer steps is never "more steps"
        resumable(setup, tmp_path, max_steps=4).load_checkpoint(tmp_path, allow_more_steps=True)
    longer = resumable(setup, tmp_path, max_steps=8)
    longer.load_checkpoint(tmp_path, allow_more_steps=True)
    assert longer.step == 3
    resumable(setup, tmp_path, micro_batch_size=4).load_checkpoint(tmp_path)


def test_the_output_folder_is_checked_before_any_training(tmp_path):
    """Catches: a run that trains for hours and then cannot save (the output path is a file or empty), and a new
    run in a folder with an earlier run's checkpoints, whose pruning then deletes the new ones and whose later
    --resume silently continues the old run."""
    from roberta_from_scratch.course.artifacts import check_output_dir

    (tmp_path / "file").write_text("")
    for bad, message in [("", "empty"), (str(tmp_path / "file"), "is a file")]:
        with pytest.raises(ValueError, match=message):
            check_output_dir(bad, resume=False, overwrite=False)
    old = tmp_path / "run" / "checkpoints" / "step-0000010"
    old.mkdir(parents=True)  # incomplete (no training state): an earlier run's folder all the same
    with pytest.raises(ValueError, match="step-0000010\\): --resume continues it, --overwrite"):
        check_output_dir(str(tmp_path / "run"), resume=False, overwrite=False)
    (old / STATE_FILE).write_bytes(b"")
    with pytest.raises(ValueError, match="--resume continues it, --overwrite"):
        check_output_dir(str(tmp_path / "run"), resume=False, overwrite=False)
    check_output_dir(str(tmp_path / "run"), resume=True, overwrite=False)
    assert old.exists()
    check_output_dir(str(tmp_path / "run"), resume=False, overwrite=True)
    assert not old.exists()
    # a finished run's model, with no checkpoint left beside it, is not overwritten either
    final = tmp_path / "done" / "final"
    final.mkdir(parents=True)
    with pytest.raises(ValueError, match=r"\(final\): --resume"):
        check_output_dir(str(tmp_path / "done"), resume=False, overwrite=False)
    assert final.exists()


@pytest.mark.parametrize("argv, message", [
    (["--eval-every", "0"], "--eval-every: 0 must be at least 1"),
    (["--lr", "0"], "--lr: 0 must be positive"),
    (["--warmup-steps", "-5"], "--warmup-steps: -5 must be at least 0"),
    (["--micro-batch-size", "0"], "--micro-batch-size: 0 must be at least 1"),
    (["--batch-size", "ten"], "--batch-size: 'ten' is not a number"),
    (["--dropout", "1.5"], r"--dropout: 1.5 must be in \[0, 1\)"),
    (["--device", "cuda"], "--device cuda: .*CUDA is not available"),
])
def test_the_pretrain_command_refuses_impossible_options_before_any_work(argv, message, capsys, tmp_path, monkeypatch):
    """Catches: --eval-every 0 failing with ZeroDivisionError inside the loop, --device cuda without CUDA failing
    with an AssertionError from inside torch, and values (--lr 0, --warmup-steps -5) accepted without a check;
    each must end at once, before a tokenizer or corpus is built, with an error that names the option."""
    from roberta_from_scratch.commands import pretrain

    # A machine without CUDA, wherever the test runs (on one with a GPU, --device cuda is right): the check is
    # tested there too, instead of passing without running.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as stop:
        pretrain.main(["--scale", "smoke", "--output-dir", str(tmp_path / "out"), *argv])
    assert stop.value.code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_settings_that_fit_no_run_stop_the_command_before_the_data_is_built(tmp_path, monkeypatch, capsys):
    """Catches: a batch that micro-batches cannot divide failing only after the tokenizer and corpus were built."""
    from roberta_from_scratch.commands import pretrain

    def never(*args, **kwargs):
        raise AssertionError("the corpus was loaded before the settings were checked")

    monkeypatch.setattr("roberta_from_scratch.data.load_corpus", never)
    with pytest.raises(SystemExit) as stop:
        pretrain.main(["--scale", "smoke", "--batch-size", "10", "--micro-batch-size", "4", "--output-dir",
                       str(tmp_path / "out")])
    assert stop.value.code == 2
    assert "batch_size=10 is not a multiple of micro_batch_size=4" in capsys.readouterr().err


def test_the_pretrain_command_builds_the_recipes_dropout(tmp_path, monkeypatch):
    """Catches: a recipe's dropout (0 at the cpu scale) that never reaches the model the command trains and saves,
    and a --dropout option that does not override it; shape options (--hidden-size, --layers, --heads, --seq-len)
    that do not reach the config (the second run takes a single step)."""
    import dataclasses

    from roberta_from_scratch.commands import pretrain
    from roberta_from_scratch.config import RobertaConfig

    from roberta_from_scratch.course import artifacts

    short = dataclasses.replace(artifacts.RECIPES["smoke"], dropout=0.0, steps=2, warmup_steps=1, eval_every=2)
    monkeypatch.setitem(artifacts.RECIPES, "smoke", short)
    shape = ["--hidden-size", "48", "--layers", "1", "--heads", "3", "--seq-len", "24"]
    for argv, expected in (([], 0.0), (["--dropout", "0.2", "--steps", "1", "--eval-every", "1", *shape], 0.2)):
        out = tmp_path / f"run{expected}"
        pretrain.main(["--scale", "smoke", "--output-dir", str(out), "--no-progress", *argv])
        config = RobertaConfig.load(out / "final")
        assert (config.hidden_dropout_prob, config.attention_probs_dropout_prob) == (expected, expected)
    # The second run's shape options reach the config too (the recipe's own shape is tiny, 128 wide, 64 tokens).
    assert (config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.num_attention_heads,
            config.max_position_embeddings) == (48, 192, 1, 3, 26)


READS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__")


def value_reads(monkeypatch, host_tensors=lambda tensor: False) -> list[tuple[str, str]]:
    """Every read of a tensor's value (on a GPU each waits for the device) made by the package's code or by
    PyTorch on its behalf (``GradScaler.get_scale()``, the scaler's check before a plain optimizer's step), as
    (the innermost package function on the stack, the package functions of the stack), recorded while the test
    runs. ``host_tensors(t)``: True for tensors that stay on the host on CUDA too, whose reads never wait."""
    import inspect

    package = str(ROOT / "roberta_from_scratch")
    found = []

    def recording(name, original):
        def read(self, *args, **kwargs):
            frame = inspect.currentframe().f_back
            stack = []
            while frame is not None:
                if frame.f_code.co_filename.startswith(package):
                    stack.append(frame.f_code.co_name)
                frame = frame.f_back
            if stack and not host_tensors(self):
                found.append((stack[0], " < ".join(stack)))
            return original(self, *args, **kwargs)
        return read

    for name in READS:
        monkeypatch.setattr(torch.Tensor, name, recording(name, getattr(torch.Tensor, name)))
    return found


def optimizer_step_counters(trainer):
    """True for the step counters of a non-fused AdamW: PyTorch keeps them on the host even on CUDA (a fused one
    keeps them on the device and never reads them), so the CPU-only fp32 path's reads of them never wait."""
    return lambda tensor: any(tensor is state.get("step") for state in trainer.optimizer.state.values()) and \
        not trainer.optimizer.defaults["fused"]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_the_steady_state_step_never_waits_for_the_device(setup, monkeypatch, precision):
    """Catches: a value read from a device tensor inside the training step (an input check, a NaN check, a loss
    turned into a float, the mask tested for padding), each of which makes the host wait for the GPU. In a step
    the package may read only the CPU batch, in ``host_batch`` before the copy; the losses are read once every
    ``log_every`` steps, all at once (evaluations, every ``eval_every`` steps, read their own results). fp16 (a
    T4's path, through RFS_PRECISION as in the rehearsal) adds the GradScaler: reading its scale to count skipped
    steps, or letting it read its overflow flag before a plain optimizer's step, each waits."""
    monkeypatch.setenv("RFS_PRECISION", precision)
    trainer = trainer_for(setup, max_steps=6, log_every=3, max_grad_norm=1.0)
    assert trainer.precision.name == precision and trainer.scaler.is_enabled() == (precision == "fp16")
    reads = value_reads(monkeypatch, optimizer_step_counters(trainer))
    history = trainer.train()
    outside = [stack for _, stack in reads if "host_batch" not in stack and "evaluate" not in stack]
    assert [stack.split(" < ")[0] for stack in outside] == ["read_losses", "read_losses"], outside
    assert all(isinstance(r["loss"], float) for r in history.train) and len(history.train) == 6
    assert trainer.skipped_steps == 0  # read here, after the run: the count stayed on the device


def test_a_diverged_run_stops_at_the_first_non_finite_step_when_the_losses_are_read(setup):
    """Catches: a non-finite loss that goes unnoticed because the losses are read in batches, or an error that names
    the step of the read instead of the step that diverged."""
    trainer = trainer_for(setup, max_steps=6, log_every=4, eval_every=100)
    original = trainer.step_on_device
    trainer.step_on_device = lambda: original() * (float("nan") if trainer.step == 2 else 1.0)
    with pytest.raises(FloatingPointError, match="the loss is nan at step 1: training diverged"):
        trainer.train()
    assert trainer.step == 4  # it ran on to the read (steps 0 to 3), then stopped: no checkpoint, no evaluation


def test_compilation_is_on_for_cuda_only_and_falls_back_to_eager(setup):
    """Catches: torch.compile forced on a CPU run (minutes of compilation for nothing on a laptop), or a compiler
    failure on CUDA that stops a run the eager path would have trained; asked for explicitly, the failure shows."""
    trainer = trainer_for(setup, max_steps=2)
    assert trainer.compiled is False and trainer.forward is trainer.eager_forward

    def broken(**kwargs):
        raise RuntimeError("the compiler found an unsupported operation")

    eager = trainer_for(setup, max_steps=2)
    expected = eager.train_step()
    for explicit in (None, True):
        auto = trainer_for(setup, max_steps=2, compile=explicit)
        auto.compiled, auto.forward, auto._compile_tried = True, broken, False  # as on CUDA, with a failing compiler
        if explicit:
            with pytest.raises(RuntimeError, match="unsupported operation"):
                auto.train_step()
            continue
        with pytest.warns(UserWarning, match="torch.compile failed .*training goes on eager"):
            assert auto.train_step() == expected  # exact: the eager path on the same weights, batch and masks
        assert auto.compiled is False and auto.forward is auto.eager_forward


class FailsInBackward(torch.autograd.Function):
    """The identity in the forward pass; raises in the backward pass, as a compiled backward graph can (the
    compiler builds it when the backward pass first runs, after a forward pass that worked)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("the compiled backward met an unsupported operation")


def test_a_compile_failure_in_the_backward_pass_falls_back_to_eager(setup):
    """Catches: a compiler failure in the backward pass stopping a run that eager would have trained (only the
    forward pass was guarded), and an eager retry that adds its gradients to those the half-done backward pass
    left, or that draws other dropout masks than the failed attempt drew. The stand-in for the compiled model
    runs the eager model with layer 0's output passed through ``FailsInBackward``: the backward pass has filled
    the gradients of the head and of layer 1 when it raises. The step must warn once and give the loss and the
    gradients of a trainer that was eager from the start; asked for explicitly (compile=True), it must raise."""
    import warnings

    eager = trainer_for(setup, micro_batch_size=4)  # two micro-batches: only the first one tries the compiled path
    expected = eager.compute_gradients()
    expected_grads = {n: p.grad.clone() for n, p in eager.model.named_parameters() if p.grad is not None}
    for explicit in (None, True):
        trainer = trainer_for(setup, micro_batch_size=4, compile=explicit)
        assert trainer.model.config.hidden_dropout_prob > 0  # the retry must replay the failed attempt's masks
        layer = trainer.model.roberta.layers[0]

        def compiled(**kwargs):
            handle = layer.register_forward_hook(lambda module, args, out: (FailsInBackward.apply(out[0]), out[1]))
            try:
                return trainer.eager_forward(**kwargs)
            finally:
                handle.remove()

        trainer.compiled, trainer.forward, trainer._compile_tried = True, compiled, False  # as on CUDA
        if explicit:
            with pytest.raises(RuntimeError, match="compiled backward met an unsupported operation"):
                trainer.compute_gradients()
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loss = trainer.compute_gradients()
        messages = [str(w.message) for w in caught if "torch.compile failed" in str(w.message)]
        assert len(messages) == 1 and "training goes on eager" in messages[0], messages
        assert trainer.compiled is False and trainer.forward is trainer.eager_forward
        # Exact: the retry runs the eager trainer's operations on the same weights, batch and dropout masks.
        assert loss == expected
        grads = {n: p.grad for n, p in trainer.model.named_parameters() if p.grad is not None}
        assert grads.keys() == expected_grads.keys() and len(grads) > 10
        for name, grad in grads.items():  # exact: the same operations, as for the loss
            assert torch.equal(grad, expected_grads[name]), name


def test_an_fp16_step_whose_gradients_overflow_is_skipped_and_counted(setup, tmp_path):
    """Catches: an fp16 step (a T4's path, here on the CPU) that applies an update from inf or NaN gradients, a
    skipped step left uncounted, or a count lost by a checkpoint. A loss scale of 2^100 makes the fp16 backward
    pass overflow: the fused AdamW must leave every weight and its step count as they were, the scale must halve,
    and skipped_steps (counted on the device) must say 1, also after a resume."""
    trainer = trainer_for(setup, precision="fp16", max_steps=3)
    assert trainer.precision.name == "fp16" and trainer.optimizer.defaults["fused"]
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    loss = trainer.train_step()
    assert 0 < loss < 10  # the loss itself is finite: its scaled gradients are not
    assert trainer.step == 1 and trainer.skipped_steps == 1
    assert trainer.scaler.get_scale() == 2.0**99  # exact: a power of two halved
    for name, weight in trainer.model.named_parameters():
        assert torch.equal(weight, before[name]), name  # exact: no update touched them
    assert all(int(state["step"]) == 0 for state in trainer.optimizer.state.values())  # Adam's count stayed
    trainer.save_checkpoint(tmp_path)
    resumed = trainer_for(setup, precision="fp16", max_steps=3)
    resumed.load_checkpoint(tmp_path)
    assert resumed.skipped_steps == 1 and resumed.scaler.get_scale() == 2.0**99

    normal = trainer_for(setup, precision="fp16", max_steps=3)  # the default scale, 2^16: no overflow here
    normal.train_step()
    assert normal.skipped_steps == 0 and normal.scaler.get_scale() == 2.0**16  # exact: the default, unchanged
    assert not torch.equal(normal.model.lm_head.bias, before["lm_head.bias"])  # updated


def test_a_resume_in_another_precision_keeps_the_runs_own_optimizer(setup, tmp_path):
    """Catches: a checkpoint that replaces the resumed run's choice of fused or plain AdamW with its own (the
    optimizer's state carries it in its param groups, and loading takes theirs): an fp16 checkpoint made a resumed
    fp32 run's optimizer fused. (The other way, fp32 to fp16, the checkpoint holds no GradScaler state.)"""
    fp16 = trainer_for(setup, tmp_path, precision="fp16")
    fp16.train(until=2)
    fp16.save_checkpoint()
    resumed = trainer_for(setup, tmp_path, precision="fp32")
    resumed.load_checkpoint(tmp_path)
    assert resumed.optimizer.defaults["fused"] is False
    assert [group["fused"] for group in resumed.optimizer.param_groups] == [False, False]
    steps = [state["step"] for state in resumed.optimizer.state.values()]
    assert steps and all(s.device == torch.device("cpu") and int(s) == 2 for s in steps)
    resumed.train()
    assert resumed.step == 6 and all(isinstance(r["loss"], float) for r in resumed.history.train)


def test_full_packed_blocks_reach_attention_without_a_mask(setup, monkeypatch):
    """Catches: an all-ones mask handed to SDPA in the training step. With any mask, even one that keeps every
    key, PyTorch cannot use its flash kernel and builds the bias tensor; full packed blocks need none. A batch
    with padding must still get its mask (a dropped one would let tokens attend to padding)."""
    import torch.nn.functional as F

    from roberta_from_scratch import attention

    masks = []
    original = F.scaled_dot_product_attention

    def recording(q, k, v, attn_mask=None, **kwargs):
        masks.append(attn_mask)
        return original(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", recording)
    tokenizer, blocks, _ = setup
    full = full_blocks(blocks)
    for rows, padded in ((full, False), (full[:4] + [b[:20] for b in full[:4]], True)):  # rows of 20 among 32
        trainer = Trainer(tiny_model(tokenizer), rows, DataCollatorForMLM(tokenizer),
                          TrainingConfig(max_steps=2, batch_size=8, lr=1e-3, progress=False, device="cpu"))
        masks.clear()
        trainer.train_step()
        assert len(masks) == trainer.model.config.num_hidden_layers, masks
        if padded:
            assert all(m is not None and not bool(m.all()) for m in masks)
        else:
            assert all(m is None for m in masks), masks


def full_blocks(blocks, count=8):
    """``count`` packed blocks of the full length: no padding in their batch."""
    width = max(len(b) for b in blocks)
    full = [b for b in blocks if len(b) == width][:count]
    assert len(full) == count
    return full


def test_the_step_counts_the_flops_of_the_layers_and_of_the_sparse_head(setup):
    """Catches: an MFU that leaves out the MLM head, counts it on every position instead of the predicted ones, or
    misses the tied decoder's gradient: the Trainer's FLOPs for one step must equal what PyTorch's FlopCounterMode
    counts for the same forward and backward (every matrix multiply, attention's included), exactly; a padded
    vocabulary's extra columns are computed but not counted."""
    from torch.utils.flop_counter import FlopCounterMode

    from roberta_from_scratch.training import head_flops_per_target

    tokenizer, blocks, _ = setup
    counted = {}
    for multiple in (1, 64):  # 400 tokens, and padded to 448: the padding's columns are computed, not counted
        trainer = Trainer(tiny_model(tokenizer), full_blocks(blocks), DataCollatorForMLM(tokenizer),
                          TrainingConfig(max_steps=2, batch_size=8, micro_batch_size=4, lr=1e-3, progress=False,
                                         device="cpu", pad_vocab_multiple=multiple))
        parts = trainer.host_batch()
        config = trainer.model.config
        targets = sum(int((part["labels"] != -100).sum()) for part, _ in parts)
        assert trainer.last_tokens == 8 * len(full_blocks(blocks)[0])
        assert trainer.last_flops == trainer.last_tokens * trainer.flops_per_token + \
            targets * head_flops_per_target(config)
        with FlopCounterMode(display=False) as counter:
            for part, _ in parts:
                trainer.model(**{k: v for k, v in part.items() if v is not None}).loss.backward()
        counted[multiple] = counter.get_total_flops()
        assert trainer.last_tokens * trainer.flops_per_token < 0.95 * counted[multiple]  # the head: 8% here
    assert trainer.last_flops == counted[1]  # exact: every matrix multiply, forward and backward
    assert counted[64] - counted[1] == targets * 6 * config.hidden_size * (448 - 400)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_the_device_part_of_a_step_has_no_operation_that_waits_for_the_device(setup, monkeypatch, precision):
    """Catches what the value-read test cannot see, because it happens inside PyTorch's kernels: an operation of the
    forward or backward pass, or of the update, whose result the host must wait for. Either a value handed to
    Python (aten._local_scalar_dense, what .item(), bool() and float() run: GradScaler.get_scale(), the scaler's
    check of its overflow flag before a plain optimizer's step) or an output whose size depends on the data
    (nonzero, masked_select, indexing with a boolean mask, as the sparse head once selected its rows), whose size
    the device must report before the host can go on. Every aten operation of the step after host_batch is
    recorded, in fp32 and on fp16's path with its GradScaler (RFS_PRECISION, as in the rehearsal); the same
    detector sees the boolean selection when the head is called without label_positions."""
    from torch.utils._python_dispatch import TorchDispatchMode

    aten = torch.ops.aten
    waiting = {aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default,
               aten.unique_consecutive.default, aten._unique2.default}

    class Recorder(TorchDispatchMode):
        def __init__(self, host_tensors=lambda tensor: False):
            super().__init__()
            self.found, self.host_tensors = [], host_tensors

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            boolean_index = func in (aten.index.Tensor, aten.index_put.default, aten.index_put_.default) and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] if i is not None)
            if (func in waiting and not self.host_tensors(args[0])) or boolean_index:
                self.found.append(str(func))
            return func(*args, **(kwargs or {}))

    monkeypatch.setenv("RFS_PRECISION", precision)
    tokenizer, blocks, _ = setup
    for rows in (full_blocks(blocks), [b[:20] for b in full_blocks(blocks)[:4]] + full_blocks(blocks)[:4]):
        trainer = Trainer(tiny_model(tokenizer), rows, DataCollatorForMLM(tokenizer),
                          TrainingConfig(max_steps=3, batch_size=8, micro_batch_size=4, lr=1e-3, progress=False,
                                         device="cpu"))
        assert trainer.precision.name == precision and trainer.scaler.is_enabled() == (precision == "fp16")
        trainer.train_step()
        parts = trainer.host_batch()  # the CPU side: its reads and nonzero run on the CPU batch, before the copy
        assert all("label_positions" in part for part, _ in parts)
        trainer.host_batch = lambda parts=parts: parts
        with Recorder(optimizer_step_counters(trainer)) as recorder:
            trainer.step_on_device()  # forward, backward, unscale, clip, the (fused in fp16) update, the scaler
        assert recorder.found == [], recorder.found
    part = {k: v for k, v in parts[0][0].items() if k != "label_positions"}
    with Recorder() as recorder:
        trainer.model(**part).loss.backward()  # the boolean selection: the detector must see it
    assert recorder.found, "the detector saw nothing in the boolean selection"


def test_an_fp32_checkpoint_resumes_in_fp16(setup, tmp_path):
    """Catches: a resume in fp16 from a run without loss scaling, whose checkpoint holds the disabled scaler's
    empty state: loading it into the enabled scaler raised "The source state dict is empty"."""
    fp32 = trainer_for(setup, tmp_path, precision="fp32")
    fp32.train(until=2)
    fp32.save_checkpoint()
    resumed = trainer_for(setup, tmp_path, precision="fp16")
    resumed.load_checkpoint(tmp_path)
    assert resumed.step == 2 and resumed.scaler.is_enabled()
    resumed.train()
    assert resumed.step == 6 and all(isinstance(r["loss"], float) for r in resumed.history.train)


# ----------------------------------------------------------------------------------------------- checkpoints of a run


def test_a_run_refuses_a_folder_with_another_runs_checkpoints_and_prunes_only_its_own(setup, tmp_path):
    """Catches: pruning by name across the whole folder (another run's newer step-300 and step-400 there made a new
    run delete each of its own checkpoints as it was written, so a crash lost the run), and a Trainer that wrote
    into such a folder at all. The other run's folders survive, complete or not."""
    other = resumable(setup, tmp_path, checkpoint_every=3)
    other.train()
    assert [p.name for p in checkpoints(tmp_path)] == ["step-0000003", "step-0000006"]
    (tmp_path / "step-0000400").mkdir()  # an incomplete folder (a crash before its training state was written)
    fresh = resumable(setup, tmp_path, checkpoint_every=2, keep_checkpoints=1)
    with pytest.raises(ValueError, match="holds checkpoints of another run .*step-0000003, step-0000006"):
        fresh.train()
    assert fresh.step == 0  # refused before the first step
    with pytest.raises(ValueError, match="another run"):
        fresh.save_checkpoint()  # and by the API that writes
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-0000003", "step-0000006", "step-0000400"]
    # the same run resumed goes on in its folder and prunes its own checkpoints only
    (tmp_path / "step-0000400").rmdir()
    more = resumable(setup, tmp_path, checkpoint_every=2, keep_checkpoints=1, max_steps=8)
    more.load_checkpoint(tmp_path, allow_more_steps=True)
    assert more.run_id == other.run_id
    more.train()
    assert [p.name for p in checkpoints(tmp_path)] == ["step-0000008"]


def test_resume_refuses_a_checkpoint_missing_a_tensor_and_one_trained_on_other_data(setup, tmp_path):
    """Catches: a checkpoint with a tensor removed resuming silently with that tensor back at its initial weights
    (the load report was dropped), and a resume on another corpus accepted (it trains on other data)."""
    from safetensors.torch import load_file, save_file

    first = resumable(setup, tmp_path)
    first.train(until=3)
    saved = first.save_checkpoint()
    tokenizer, blocks, eval_blocks = setup
    other_data = Trainer(tiny_model(tokenizer), blocks[1:], DataCollatorForMLM(tokenizer),
                         TrainingConfig(**{**first.cfg.__dict__}), eval_blocks)
    with pytest.raises(ValueError, match="trained on other data"):
        other_data.load_checkpoint(tmp_path)
    weights = load_file(saved / "model.safetensors")
    removed = "roberta.encoder.layer.1.attention.self.value.weight"
    save_file({k: v for k, v in weights.items() if k != removed}, str(saved / "model.safetensors"))
    with pytest.raises(ValueError, match=r"newly initialised .*layers\.1\.attention\.value\.weight"):
        resumable(setup, tmp_path).load_checkpoint(tmp_path)


def test_a_run_on_two_processes_with_dropout_resumes_exactly_on_two(tmp_path, python_docs_dir, python_docs):
    """Catches: a multi-process resume that re-seeds dropout (the docstring promised an exact resume): with dropout
    0.1 on two processes, stopping at step 2 and resuming must end where the uninterrupted run ends."""
    from safetensors.torch import load_file

    data = tmp_path / "data"
    shutil.copytree(python_docs_dir / "cache", data / "cache")
    env = {**os.environ, "RFS_DATA_DIR": str(data), "RFS_SCALE": "smoke", "OMP_NUM_THREADS": "1"}

    def launch(output, *extra):
        done = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
             "-m", "roberta_from_scratch", "pretrain", "--scale", "smoke", "--steps", "4", "--batch-size", "8",
             "--dropout", "0.1", "--checkpoint-every", "2", "--eval-every", "4", "--no-progress", "--device", "cpu",
             "--output-dir", str(output), *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout + done.stderr

    launch(tmp_path / "straight")
    shutil.copytree(tmp_path / "straight" / "checkpoints" / "step-0000002",
                    tmp_path / "resumed" / "checkpoints" / "step-0000002")
    printed = launch(tmp_path / "resumed", "--resume")
    assert "resumed from" in printed and "dropout's random draws do not" not in printed
    a = load_file(tmp_path / "straight" / "final" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "final" / "model.safetensors")
    for key in a:
        # exact: the same two processes repeat the same operations on the same data, masks and dropout draws
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("argv, message", [
    (["--lr", "inf"], "--lr: inf must be positive and finite"),
    (["--lr", "nan"], "--lr: nan must be positive and finite"),
])
def test_the_pretrain_command_refuses_infinite_rates(argv, message, capsys, tmp_path):
    """Catches: --lr inf accepted, failing 25 seconds later inside the loop."""
    from roberta_from_scratch.commands import pretrain

    with pytest.raises(SystemExit) as stop:
        pretrain.main(["--scale", "smoke", "--output-dir", str(tmp_path / "out"), *argv])
    assert stop.value.code == 2 and re.search(message, capsys.readouterr().err)


def test_a_command_prints_a_users_error_without_a_traceback(tmp_path, python_docs_dir, python_docs):
    """Catches: clear messages printed under a full traceback (a corpus path that does not exist)."""
    shutil.copytree(python_docs_dir / "cache", tmp_path / "data" / "cache")
    env = {**os.environ, "RFS_SCALE": "smoke", "RFS_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "roberta_from_scratch", "pretrain", "--scale", "smoke", "--corpus",
                           str(tmp_path / "no-such-corpus"), "--output-dir", str(tmp_path / "out"), "--no-progress"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith("error: ") and "no-such-corpus" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_the_pretrain_command_defaults_are_pretrain_runs_own():
    """Catches: a default written twice (the parser's and PretrainRun's) that drifts: the command and the course's
    cached models would then train differently from the same settings."""
    import dataclasses

    from roberta_from_scratch.commands.pretrain import build_parser
    from roberta_from_scratch.course.artifacts import PretrainRun

    parsed = vars(build_parser().parse_args(["--output-dir", "x"]))
    assert set(parsed) == {f.name for f in dataclasses.fields(PretrainRun)}
    assert PretrainRun(**parsed) == PretrainRun(output_dir="x")


def test_accuracy_by_what_the_position_shows(setup):
    """evaluate's accuracy at <mask>, at random replacements and at kept tokens, against a count by hand; the
    per-target outcomes agree with it, and the three kinds add up to the overall accuracy."""
    from roberta_from_scratch.settings import pick_precision
    from roberta_from_scratch.training import KINDS, evaluate, masked_heldout, target_kinds, target_outcomes

    tokenizer, _, eval_blocks = setup
    cpu = torch.device("cpu")
    model = tiny_model(tokenizer)
    batches = masked_heldout(eval_blocks, DataCollatorForMLM(tokenizer), 8)
    result = evaluate(model, batches, cpu, pick_precision(cpu), tokenizer.mask_token_id)
    outcomes = target_outcomes(model, batches, cpu, pick_precision(cpu), tokenizer.mask_token_id)
    # by hand: what each labelled position shows, and whether the top guess is right
    counts = {kind: [0, 0] for kind in KINDS}
    with torch.no_grad():
        model.eval()
        for batch in batches:
            guesses = model(batch["input_ids"], attention_mask=batch["attention_mask"]).logits.argmax(-1)
            for row, col in (batch["labels"] != -100).nonzero().tolist():
                shown, target = batch["input_ids"][row, col].item(), batch["labels"][row, col].item()
                kind = "mask" if shown == tokenizer.mask_token_id else "kept" if shown == target else "random"
                counts[kind][0] += guesses[row, col].item() == target
                counts[kind][1] += 1
    total = sum(n for _, n in counts.values())
    assert total == len(outcomes["correct"])
    assert counts["mask"][1] > 0.7 * total and counts["kept"][1] > 0 and counts["random"][1] > 0  # 80/10/10
    for k, kind in enumerate(KINDS):
        assert result[f"accuracy_{kind}"] == counts[kind][0] / counts[kind][1]  # exact: the same integer counts
        assert result[f"share_{kind}"] == counts[kind][1] / total  # exact: the same integer counts
        chosen = outcomes["kind"] == k
        assert outcomes["correct"][chosen].sum().item() == counts[kind][0]
    assert sum(right for right, _ in counts.values()) == round(result["accuracy"] * total)
    # a kept position is one whose shown token is the target, even when the random draw picked it
    ids, labels = torch.tensor([[5, 9, 7, 4]]), torch.tensor([[-100, 9, 8, 4]])
    assert target_kinds(ids, labels, mask_token_id=4).tolist() == [2, 1, 0]


def test_trainer_reports_accuracy_at_mask(setup):
    trainer = trainer_for(setup, max_steps=3)
    history = trainer.train()
    assert {"accuracy_mask", "accuracy_random", "accuracy_kept"} <= set(history.eval[-1])
    shares = sum(history.eval[-1][f"share_{kind}"] for kind in ("mask", "random", "kept"))
    torch.testing.assert_close(shares, 1.0, rtol=0, atol=1e-12)  # three integer counts over their sum
