"""The switches that rehearse Colab's GPU path on a CPU (settings.py): RFS_REHEARSAL cuts the long loops and keeps
everything else of a scale, RFS_PRECISION forces a training precision on any device."""

from dataclasses import asdict

import pytest
import torch

from roberta_from_scratch import settings


@pytest.mark.parametrize("name", list(settings.SCALES))
def test_a_rehearsal_keeps_the_scale_and_cuts_only_its_loops(name, monkeypatch):
    """Catches: a rehearsal that changes a size, a recipe or a branch of the scale it rehearses (then the gpu path
    it claims to run is another one), or that leaves a long loop long."""
    monkeypatch.setenv(settings.REHEARSAL_ENV, "1")
    full, cut = settings.SCALES[name], settings.get_scale(name)
    assert cut.rehearsal and not full.rehearsal
    loops = {"steps", "warmup_steps", "eval_every"}
    assert {k: v for k, v in asdict(cut.pretrain).items() if k not in loops} == \
        {k: v for k, v in asdict(full.pretrain).items() if k not in loops}
    assert (cut.vocab_size, cut.finetune_lr, cut.minutes_per_notebook) == \
        (full.vocab_size, full.finetune_lr, full.minutes_per_notebook)
    assert cut.pretrain.steps <= 2 * settings.REHEARSAL_STEPS and cut.finetune_epochs == 1
    assert cut.pretrain.eval_every <= cut.pretrain.steps  # the evaluation branch runs too
    assert cut.cut(1000) == settings.REHEARSAL_STEPS and cut.cut(2) == 2 and cut.cut(1000, few=5) == 5
    assert full.cut(1000) == 1000  # outside a rehearsal nothing is cut
    monkeypatch.delenv(settings.REHEARSAL_ENV)
    assert settings.get_scale(name) is full


@pytest.mark.parametrize("value, expected", [("", False), ("0", False), ("no", False), ("1", True), ("true", True)])
def test_the_rehearsal_switch_reads_its_values(value, expected, monkeypatch):
    monkeypatch.setenv(settings.REHEARSAL_ENV, value)
    assert settings.rehearsing() is expected


def test_an_unclear_rehearsal_value_is_refused(monkeypatch):
    monkeypatch.setenv(settings.REHEARSAL_ENV, "maybe")
    with pytest.raises(ValueError, match="RFS_REHEARSAL='maybe': set it to 1"):
        settings.get_scale("smoke")


@pytest.mark.parametrize("value, dtype, scaler", [("fp16", torch.float16, True), ("bf16", torch.bfloat16, False),
                                                  ("fp32", None, False)])
def test_a_forced_precision_holds_on_the_cpu(value, dtype, scaler, monkeypatch):
    """Catches: a T4's fp16 path (autocast + GradScaler) that cannot be asked for on a CPU, so it is never run."""
    monkeypatch.setenv(settings.PRECISION_ENV, value)
    precision = settings.pick_precision("cpu")
    assert (precision.name, precision.autocast_dtype, precision.use_grad_scaler, precision.device_type) == \
        (value, dtype, scaler, "cpu")
    with precision.autocast():
        out = torch.ones(2, 2) @ torch.ones(2, 2)
    assert out.dtype == (dtype or torch.float32)


def test_auto_precision_and_a_wrong_name(monkeypatch):
    monkeypatch.setenv(settings.PRECISION_ENV, "auto")
    assert settings.pick_precision("cpu").name == "fp32"
    monkeypatch.setenv(settings.PRECISION_ENV, "fp8")
    with pytest.raises(ValueError, match="RFS_PRECISION='fp8': use one of auto, fp32, bf16, fp16"):
        settings.pick_precision("cpu")
