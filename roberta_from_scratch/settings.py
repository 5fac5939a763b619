"""Scale, device and precision: the one place where the course decides how big and how fast.

Every notebook and command line reads its sizes from here, so a learner changes one environment variable,
``RFS_SCALE``, and the whole course follows:

* ``smoke``: the test suite. Tiny sizes; each notebook runs in at most 90 s on a 2-core CPU.
* ``cpu``: a laptop without a GPU. Each notebook in at most 10 minutes on 2 cores, sized to learn as much as
  possible in that time. The outputs committed with the notebooks come from this scale.
* ``gpu``: a free Colab T4 (16 GB, fp16). Each notebook in at most 30 minutes.

The default is ``gpu`` when CUDA is available and ``cpu`` otherwise. ``RFS_DEVICE`` (cuda, mps, cpu) overrides
the device picked by :func:`pick_device`.

Three switches rehearse Colab's GPU path on a machine without one (``make test-gpu-path`` sets all three):

* ``RFS_DEVICE=audit``: the course's device is ``cpu:0``, a CPU standing in for CUDA. Whatever is moved there is
  marked, and the marks follow every operation (:mod:`roberta_from_scratch.device_audit`): handing a marked tensor
  to numpy or matplotlib, or mixing it with a host tensor in one operation, raises the error CUDA would raise.
* ``RFS_PRECISION=fp16`` (or ``bf16``, ``fp32``): the training precision on any device, e.g. a T4's fp16 autocast
  with a GradScaler on the CPU (both work there in current PyTorch, slowly).
* ``RFS_REHEARSAL=1``: every long loop cut to a few steps (:meth:`Scale.cut`), the sizes, recipes and branches of
  the scale kept, so that every branch of a scale runs in minutes.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from dataclasses import asdict, dataclass

import torch

from .device_audit import AUDIT_DEVICE, activate

SCALE_ENV = "RFS_SCALE"
DEVICE_ENV = "RFS_DEVICE"
PRECISION_ENV = "RFS_PRECISION"
REHEARSAL_ENV = "RFS_REHEARSAL"
AUDIT = "audit"  # RFS_DEVICE=audit: the device audit (module docstring)
REHEARSAL_STEPS = 3  # what a long loop is cut to in a rehearsal


@dataclass(frozen=True)
class PretrainRecipe:
    """What notebook 05 and ``python -m roberta_from_scratch pretrain`` train at a scale. The cpu recipe was chosen
    by timed trials (notebook 05 lists them): on 2 cores a small model taking many steps learns the most."""

    preset: str  # RobertaConfig preset
    hidden_size: int | None  # overrides the preset's width (intermediate = 4x); None keeps it
    vocab_size: int  # BPE vocabulary of the pretrained model
    seq_len: int  # tokens per packed block, <s> included
    batch_size: int  # sequences per optimizer step
    lr: float
    steps: int
    warmup_steps: int
    eval_every: int
    dropout: float = 0.1  # hidden and attention dropout while pretraining (RoBERTa: 0.1); finetuning puts 0.1 back

    def model_config(self, vocab_size: int, **overrides):
        """The RobertaConfig this recipe trains, for a tokenizer of ``vocab_size`` tokens; ``overrides`` replace
        fields of the config the recipe does not set (``num_hidden_layers``, ``num_attention_heads``)."""
        from .config import RobertaConfig

        width = {} if self.hidden_size is None else {"hidden_size": self.hidden_size,
                                                     "intermediate_size": 4 * self.hidden_size}
        return RobertaConfig.from_preset(self.preset, vocab_size=vocab_size, max_position_embeddings=self.seq_len + 2,
                                         hidden_dropout_prob=self.dropout, attention_probs_dropout_prob=self.dropout,
                                         **width, **overrides)


@dataclass(frozen=True)
class Scale:
    """The sizes a scale chooses. Notebooks print them and say how to change them."""

    name: str
    description: str
    minutes_per_notebook: float  # the budget each notebook is held to at this scale
    vocab_size: int  # the BPE vocabulary notebooks 01 to 04 train and use
    pretrain: PretrainRecipe
    finetune_epochs: int
    finetune_lr: float
    rehearsal: bool = False  # RFS_REHEARSAL=1: long loops cut to a few steps (cut), everything else as the scale

    def cut(self, n: int, few: int = REHEARSAL_STEPS) -> int:
        """How many iterations a long loop of ``n`` takes at this scale: ``n``, or at most ``few`` in a rehearsal.
        Every loop that scales with the budget (steps, epochs, seeds, grid points) goes through here."""
        return min(n, few) if self.rehearsal else n

    def as_table(self) -> str:
        rows = [(k, v) for k, v in asdict(self).items() if k not in ("name", "description", "pretrain", "rehearsal")]
        rows += [(f"pretrain.{k}", v) for k, v in asdict(self.pretrain).items() if v is not None]
        width = max(len(k) for k, _ in rows)
        lines = [f"scale {self.name!r}: {self.description}"]
        lines += [f"  {k:<{width}}  {v}" for k, v in rows]
        lines.append(f"  (change with the environment variable {SCALE_ENV}=smoke|cpu|gpu before starting the kernel)")
        return "\n".join(lines)


SCALES: dict[str, Scale] = {
    "smoke": Scale("smoke", "test suite: tiny sizes, each notebook at most 90 s on 2 CPU cores", 1.5, 512,
                   PretrainRecipe("tiny", None, 512, 64, 16, 2e-3, 30, 3, 15), finetune_epochs=2, finetune_lr=3e-4),
    "cpu": Scale("cpu", "a laptop without a GPU: each notebook at most 10 minutes on 2 cores", 10, 8000,
                 # dropout off: a 0.9M-parameter model seeing each block 22 times with fresh masks underfits, and
                 # on 2 cores dropout adds about a fifth to each step (notebook 05 prints both)
                 PretrainRecipe("tiny", None, 4000, 64, 64, 3e-3, 2600, 130, 325, dropout=0.0), finetune_epochs=10,
                 finetune_lr=1e-3),  # full finetuning's rate in notebook 06's sweep (results/finetuning-cpu.json)
    "gpu": Scale("gpu", "a free Colab T4 (16 GB, fp16): each notebook at most 30 minutes", 30, 16000,
                 PretrainRecipe("small", None, 16000, 128, 128, 1e-3, 2000, 100, 250), finetune_epochs=10,
                 finetune_lr=1e-4),
}


def get_scale(name: str | None = None) -> Scale:
    """The scale named by ``name``, else by ``$RFS_SCALE``, else ``gpu`` with CUDA and ``cpu`` without."""
    if name is None:
        name = os.environ.get(SCALE_ENV, "").strip()
    if not name:
        name = "gpu" if torch.cuda.is_available() else "cpu"
    key = name.strip().lower()
    if key not in SCALES:
        raise ValueError(
            f"unknown scale {name!r}: set {SCALE_ENV} to one of {', '.join(SCALES)} "
            f"(for example `export {SCALE_ENV}=cpu`)"
        )
    return rehearsed(SCALES[key]) if rehearsing() else SCALES[key]


def rehearsing() -> bool:
    """True when ``RFS_REHEARSAL`` asks for the scale's branches with its long loops cut short."""
    value = os.environ.get(REHEARSAL_ENV, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ValueError(f"{REHEARSAL_ENV}={value!r}: set it to 1 to cut long loops short, or unset it")


def rehearsed(scale: Scale) -> Scale:
    """``scale`` with its sizes, recipe and branches, and its long loops cut to a few steps."""
    from dataclasses import replace

    few = REHEARSAL_STEPS
    recipe = replace(scale.pretrain, steps=min(scale.pretrain.steps, 2 * few), warmup_steps=1,
                     eval_every=min(scale.pretrain.eval_every, few))
    return replace(scale, pretrain=recipe, finetune_epochs=min(scale.finetune_epochs, 1), rehearsal=True,
                   description=f"{scale.description} (rehearsal: {REHEARSAL_ENV}=1 cuts every long loop to a few "
                               "steps)")


def _torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def _mps_usable() -> bool:
    # MPS before torch 2.9 lacks kernels the course uses; such a Mac runs on the CPU instead.
    mps = getattr(torch.backends, "mps", None)
    return _torch_version() >= (2, 9) and mps is not None and mps.is_available()


def pick_device(name: str | None = None) -> torch.device:
    """``name``, else ``$RFS_DEVICE``, else CUDA, then MPS (torch >= 2.9 only), then the CPU."""
    if name is None:
        name = os.environ.get(DEVICE_ENV, "").strip() or None
    if name is not None and name.lower() == AUDIT:
        activate()
        return AUDIT_DEVICE
    if name is not None:
        kind = torch.device(name).type
        if kind == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} was asked for but CUDA is not available; "
                               f"use cpu or unset {DEVICE_ENV}")
        if kind == "mps" and not _mps_usable():
            raise RuntimeError(
                f"device {name!r} was asked for but MPS is not available (or torch < 2.9); "
                f"use cpu or unset {DEVICE_ENV}"
            )
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_usable():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass(frozen=True)
class Precision:
    """How the training loop runs its arithmetic on a device."""

    name: str  # "bf16", "fp16" or "fp32"
    autocast_dtype: torch.dtype | None  # None: no autocast
    use_grad_scaler: bool  # fp16 needs loss scaling; bf16 and fp32 do not
    device_type: str

    def autocast(self):
        """A context manager for the forward pass: autocast to ``autocast_dtype``, or nothing for fp32."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.autocast_dtype)


def pick_precision(device: torch.device | str | None = None) -> Precision:
    """bf16 autocast on CUDA with compute capability >= 8, fp16 + GradScaler on older GPUs, fp32 elsewhere.

    ``torch.cuda.is_bf16_supported()`` answers True on a T4 (capability 7.5) because bf16 is emulated there, and
    emulated bf16 is slow, so the capability decides, not that function.
    """
    device = pick_device() if device is None else torch.device(device)
    forced = os.environ.get(PRECISION_ENV, "").strip().lower()
    if forced and forced != "auto":
        dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
        if forced not in dtypes:
            raise ValueError(f"{PRECISION_ENV}={forced!r}: use one of auto, {', '.join(dtypes)} (or unset it)")
        return Precision(forced, dtypes[forced], forced == "fp16", device.type)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, _minor = torch.cuda.get_device_capability(index)
        if major >= 8:
            return Precision("bf16", torch.bfloat16, False, "cuda")
        return Precision("fp16", torch.float16, True, "cuda")
    return Precision("fp32", None, False, device.type)


def in_colab() -> bool:
    return "google.colab" in sys.modules


@dataclass(frozen=True)
class Environment:
    scale: Scale
    device: torch.device
    precision: Precision
    versions: dict[str, str]
    accelerator: str


def _versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("roberta-from-scratch", "transformers", "tokenizers", "datasets", "bertviz"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


def describe_environment(scale: str | None = None, device: str | None = None, verbose: bool = True) -> Environment:
    """Pick scale, device and precision, print them with the library versions, and return them.

    The setup cell of every notebook calls this, so a run's output always says what it ran on.
    """
    chosen = get_scale(scale)
    dev = pick_device(device)
    precision = pick_precision(dev)
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        cap = torch.cuda.get_device_capability(index)
        accelerator = f"{props.name}, {props.total_memory / 2**30:.0f} GiB, compute capability {cap[0]}.{cap[1]}"
    elif dev.type == "mps":
        accelerator = "Apple GPU (MPS)"
    elif dev == AUDIT_DEVICE:
        accelerator = (f"the device audit: a CPU standing in for CUDA, {torch.get_num_threads()} threads; "
                       "numpy, matplotlib or host tensors given device tensors raise as on CUDA")
    else:
        accelerator = f"CPU, {torch.get_num_threads()} threads"
    env = Environment(chosen, dev, precision, _versions(), accelerator)
    if verbose:
        print("versions: " + ", ".join(f"{k} {v}" for k, v in env.versions.items()))
        print(f"device:   {dev} ({accelerator}); precision {precision.name}; Colab: {in_colab()}")
        print(chosen.as_table())
    return env
