"""The optimizer and the learning-rate schedule of pretraining (notebook 05, section 1).

RoBERTa's Table 9: AdamW (Loshchilov & Hutter 2019) with betas (0.9, 0.98), eps 1e-6, weight decay 0.01, a linear
warm-up to the peak rate, then a linear decay to zero at the last step. No decay on biases and LayerNorm weights
(BERT's and Hugging Face's convention; fairseq decays every parameter).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from .training import TrainingConfig


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices and embeddings; none on biases and LayerNorm weights."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.dim() < 2 or "norm" in name.lower() else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, cfg: TrainingConfig, device: torch.device,
                   grad_scaler: bool = False) -> torch.optim.AdamW:
    """AdamW over :func:`parameter_groups`, fused (one kernel for the whole update) on CUDA, and on any device when
    a GradScaler drives it (``grad_scaler``, fp16): the scaler then hands the fused step its overflow flag as a
    tensor, and the step skips an overflowed update on the device. With any other optimizer ``GradScaler.step``
    reads that flag (``.item()``) to decide whether to call ``step()``: a wait for the device at every step."""
    fused = device.type == "cuda" or grad_scaler
    return torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                             fused=fused)


def keep_optimizer_kind(optimizer: torch.optim.AdamW) -> None:
    """After ``optimizer.load_state_dict``: the run's own choice of fused or plain AdamW, which loading replaces
    with the saved param groups' (a checkpoint of an fp16 run would make a resumed fp32 run fused, and one of an
    fp32 run would hand a resumed fp16 run's plain AdamW the scaler's tensors, which it refuses), and Adam's step
    counters where that kind keeps them: on the parameter's device when fused, on the host otherwise."""
    fused = optimizer.defaults["fused"]
    for group in optimizer.param_groups:
        group["fused"] = fused
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            if torch.is_tensor(state.get("step")):
                state["step"] = state["step"].to(device=p.device if fused else "cpu", dtype=torch.float32)


def linear_schedule(step: int, warmup_steps: int, total_steps: int) -> float:
    """The learning-rate multiplier: 0 -> 1 over the warm-up, then 1 -> 0 at the last step."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def make_scheduler(optimizer, cfg: TrainingConfig):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: linear_schedule(s, cfg.warmup_steps, cfg.max_steps))
