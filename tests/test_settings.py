"""Scale, device and precision choices, with the hardware faked where this machine has none."""

import pytest
import torch

from roberta_from_scratch import settings


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(settings.SCALE_ENV, raising=False)
    monkeypatch.delenv(settings.DEVICE_ENV, raising=False)


def fake_hardware(monkeypatch, cuda=False, capability=(7, 5), mps=False, torch_version="2.13.0"):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what a T4 answers too
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    monkeypatch.setattr(torch, "__version__", torch_version)


def test_scale_from_argument_and_environment(no_env, monkeypatch):
    assert settings.get_scale("smoke").name == "smoke"
    monkeypatch.setenv(settings.SCALE_ENV, " CPU ")
    assert settings.get_scale().name == "cpu"
    assert settings.get_scale("gpu").name == "gpu"  # an argument wins over the variable


def test_default_scale_follows_cuda(no_env, monkeypatch):
    fake_hardware(monkeypatch, cuda=False)
    assert settings.get_scale().name == "cpu"
    fake_hardware(monkeypatch, cuda=True)
    assert settings.get_scale().name == "gpu"


def test_unknown_scale_names_the_variable_and_choices(no_env, monkeypatch):
    monkeypatch.setenv(settings.SCALE_ENV, "huge")
    with pytest.raises(ValueError, match=r"RFS_SCALE.*smoke, cpu, gpu"):
        settings.get_scale()


def test_scales_grow_from_smoke_to_gpu():
    from roberta_from_scratch.config import PRESETS

    smoke, cpu, gpu = (settings.SCALES[n] for n in ("smoke", "cpu", "gpu"))
    assert smoke.minutes_per_notebook == 1.5 and cpu.minutes_per_notebook == 10 and gpu.minutes_per_notebook == 30
    order = list(PRESETS)
    for small, big in ((smoke, cpu), (cpu, gpu)):
        assert small.vocab_size <= big.vocab_size and small.finetune_epochs <= big.finetune_epochs
        a, b = small.pretrain, big.pretrain
        assert a.batch_size * a.seq_len * a.steps < b.batch_size * b.seq_len * b.steps  # tokens seen in pretraining
        assert order.index(a.preset) <= order.index(b.preset)
        assert a.warmup_steps < a.steps and a.eval_every <= a.steps


@pytest.mark.parametrize(
    "cuda, mps, version, expected",
    [
        (True, True, "2.13.0", "cuda"),
        (False, True, "2.9.0", "mps"),
        (False, True, "2.8.1+cpu", "cpu"),  # MPS only from torch 2.9 on
        (False, False, "2.13.0", "cpu"),
    ],
)
def test_device_order(no_env, monkeypatch, cuda, mps, version, expected):
    fake_hardware(monkeypatch, cuda=cuda, mps=mps, torch_version=version)
    assert settings.pick_device().type == expected


def test_device_override_and_its_errors(no_env, monkeypatch):
    fake_hardware(monkeypatch, cuda=True)
    monkeypatch.setenv(settings.DEVICE_ENV, "cpu")
    assert settings.pick_device() == torch.device("cpu")
    fake_hardware(monkeypatch, cuda=False)
    monkeypatch.setenv(settings.DEVICE_ENV, "cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available.*RFS_DEVICE"):
        settings.pick_device()


@pytest.mark.parametrize(
    "capability, name, dtype, scaler",
    [((8, 0), "bf16", torch.bfloat16, False), ((9, 0), "bf16", torch.bfloat16, False),
     ((7, 5), "fp16", torch.float16, True), ((6, 0), "fp16", torch.float16, True)],
)
def test_precision_follows_compute_capability_not_is_bf16_supported(monkeypatch, capability, name, dtype, scaler):
    fake_hardware(monkeypatch, cuda=True, capability=capability)
    precision = settings.pick_precision("cuda")
    assert (precision.name, precision.autocast_dtype, precision.use_grad_scaler) == (name, dtype, scaler)


def test_cpu_precision_is_plain_fp32():
    precision = settings.pick_precision("cpu")
    assert (precision.name, precision.autocast_dtype, precision.use_grad_scaler) == ("fp32", None, False)
    layer = torch.nn.Linear(4, 4)
    with precision.autocast():
        assert layer(torch.randn(2, 4)).dtype == torch.float32


def test_describe_environment_reports_what_it_chose(no_env, monkeypatch, capsys):
    fake_hardware(monkeypatch, cuda=False)
    env = settings.describe_environment(scale="smoke")
    out = capsys.readouterr().out
    assert env.scale.name == "smoke" and env.device.type == "cpu" and env.precision.name == "fp32"
    assert "scale 'smoke'" in out and "precision fp32" in out and f"torch {torch.__version__}" in out
    assert "vocab_size" in out and "RFS_SCALE" in out
