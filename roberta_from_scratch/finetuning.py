"""Finetuning for classification, and the metrics that judge it (notebook 06).

The loop reuses the pretraining pieces: the same AdamW (no decay on biases and LayerNorm), linear warm-up and
decay, precision and progress bar. RoBERTa's GLUE recipe (Liu et al. 2019, Table 10): lr 1e-5 to 3e-5, batch 16 or
32, weight decay 0.1, warm-up over the first 6% of steps, 10 epochs. The metrics are written out plainly, since
they teach; tests compare them with scikit-learn's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .settings import pick_device, pick_precision
from .batching import StepBatches, collate
from .model import evaluating
from .optim import make_optimizer, make_scheduler

# RoBERTa finetunes with dropout 0.1 on hidden states and attention (fairseq's GLUE command in
# examples/roberta/README.glue.md: --dropout 0.1 --attention-dropout 0.1). The cpu scale pretrains without dropout
# (notebook 05), so its saved config says 0.0: pass these to from_pretrained to finetune with RoBERTa's dropout.
FINETUNE_DROPOUT = {"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}


@dataclass
class FinetuneConfig:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-5
    weight_decay: float = 0.1
    warmup_ratio: float = 0.06
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    max_grad_norm: float | None = 1.0
    max_length: int = 128
    seed: int = 0
    device: str | None = None
    progress: bool = True
    steps_per_epoch: int = 0  # set by finetune()

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs={self.epochs} and batch_size={self.batch_size} must be at least 1")
        if not self.lr > 0 or not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"lr={self.lr} must be positive and warmup_ratio={self.warmup_ratio} in [0, 1) "
                             "(RoBERTa's GLUE recipe: lr 1e-5 to 3e-5, warm-up over the first 6% of steps)")
        if self.max_length < 3:
            raise ValueError(f"max_length={self.max_length}: a text needs at least 3 tokens (<s>, one token, </s>)")

    @property
    def max_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def warmup_steps(self) -> int:
        return int(self.warmup_ratio * self.max_steps)


# ----------------------------------------------------------------------------------------------- data


def encode_examples(dataset, tokenizer, max_length: int, num_labels: int | None = None) -> list[dict]:
    """Rows with ``text`` and ``label`` -> ``<s> text </s>`` ids (truncated to ``max_length``) and the label."""
    columns = list(getattr(dataset, "column_names", None) or (dataset[0].keys() if len(dataset) else []))
    if "text" not in columns or "label" not in columns:
        raise ValueError(f"a classification set needs 'text' and 'label' columns; this one has: {', '.join(columns)}")
    regression = num_labels == 1  # a score per text (STS-B), not a class
    texts = list(dataset["text"])
    labels = [float(x) if regression else int(x) for x in dataset["label"]]
    if num_labels is not None and not regression:
        bad = [x for x in labels if not 0 <= x < num_labels]
        if bad:
            raise ValueError(f"label {bad[0]} is outside [0, {num_labels}): the model has num_labels={num_labels}")
    batch = tokenizer(texts, padding=False, truncation=True, max_length=max_length, return_tensors=None)
    return [{"input_ids": ids, "label": label} for ids, label in zip(batch["input_ids"], labels)]


def task_model(cls, pretrained_dir, seed: int, random_init: bool = False, **config_overrides):
    """A model of ``cls`` (a class with a task head) from the pretrained encoder with a new head, finetuning's
    dropout restored; or, with ``random_init``, the same config from random weights (the baseline that shows
    what pretraining bought). The seed fixes the new weights."""
    torch.manual_seed(seed)
    model = cls.from_pretrained(pretrained_dir, new_head=True, **FINETUNE_DROPOUT, **config_overrides)
    if random_init:
        torch.manual_seed(seed)
        model = cls(model.config)
    return model


# ----------------------------------------------------------------------------------------------- freezing


def freeze(model, trainable_layers: int | None = None) -> int:
    """Freeze the encoder except its top ``trainable_layers`` layers (0: a probe, the head alone on frozen features;
    None: unfreeze everything). The head always trains. Returns the number of trainable parameters."""
    for p in model.parameters():
        p.requires_grad = True
    if trainable_layers is not None:
        layers = model.roberta.layers
        if not 0 <= trainable_layers <= len(layers):
            raise ValueError(f"trainable_layers={trainable_layers}: the model has {len(layers)} layers; give 0 (the "
                             f"head alone) to {len(layers)}, or None to train everything")
        frozen = [model.roberta.embeddings, *layers[: max(0, len(layers) - trainable_layers)]]
        if trainable_layers == 0 and model.roberta.final_norm is not None:
            frozen.append(model.roberta.final_norm)  # pre-LN's last LayerNorm is the top of the frozen encoder
        for module in frozen:
            for p in module.parameters():
                p.requires_grad = False
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------------------------- metrics


def confusion_matrix(labels, predictions, num_labels: int) -> torch.Tensor:
    """Entry [i, j]: how many examples of class i were predicted as j."""
    labels, predictions = torch.as_tensor(labels), torch.as_tensor(predictions)
    return torch.bincount(labels * num_labels + predictions, minlength=num_labels**2).view(num_labels, num_labels)


def classification_metrics(labels, predictions, num_labels: int) -> dict[str, float]:
    """Accuracy, and macro precision, recall and F1 (each class counts the same, whatever its size).

    Per class c: precision = TP / (TP + FP) (of what we called c, how much was c), recall = TP / (TP + FN) (of the
    real c, how much we found), F1 = their harmonic mean; a class with no prediction (or no example) scores 0.
    """
    matrix = confusion_matrix(labels, predictions, num_labels).double()
    tp = matrix.diag()
    predicted, actual = matrix.sum(0), matrix.sum(1)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(actual > 0, tp / actual.clamp(min=1), torch.zeros_like(tp))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12),
                     torch.zeros_like(tp))
    return {"accuracy": (tp.sum() / matrix.sum()).item(), "precision": precision.mean().item(),
            "recall": recall.mean().item(), "macro_f1": f1.mean().item()}


def regression_metrics(labels, predictions) -> dict[str, float]:
    """For a score per text (``num_labels == 1``, STS-B): mean squared error, and the two correlations GLUE reports
    for STS-B, Pearson's (linear) and Spearman's (Pearson's on the ranks, ties sharing their mean rank)."""
    from scipy.stats import rankdata

    labels = torch.as_tensor(labels, dtype=torch.float64).flatten()
    predictions = torch.as_tensor(predictions, dtype=torch.float64).flatten()
    if labels.numel() != predictions.numel() or labels.numel() < 2:
        raise ValueError(f"regression metrics need as many predictions as labels, at least 2; got "
                         f"{predictions.numel()} predictions for {labels.numel()} labels")

    def pearson(x, y):
        x, y = x - x.mean(), y - y.mean()
        denominator = (x.norm() * y.norm()).item()
        return (x @ y).item() / denominator if denominator > 0 else float("nan")  # a constant has no correlation

    ranks = lambda v: torch.from_numpy(rankdata(v.numpy()))  # noqa: E731  (average ranks for ties)
    return {"mse": ((predictions - labels) ** 2).mean().item(), "pearson": pearson(predictions, labels),
            "spearman": pearson(ranks(predictions), ranks(labels))}


def validation_metrics(model, validation: list[dict], pad_token_id: int) -> dict[str, float]:
    """finetune()'s default evaluation: classification metrics on the argmax, or regression metrics on the score
    when the model has one output (``num_labels == 1``)."""
    logits = predict(model, validation, pad_token_id)
    labels = torch.tensor([e["label"] for e in validation])
    num_labels = model.config.num_labels
    if num_labels == 1:
        return regression_metrics(labels, logits.squeeze(-1))
    return classification_metrics(labels, logits.argmax(-1), num_labels)


@torch.no_grad()
def predict(model, examples: list[dict], pad_token_id: int, batch_size: int = 64) -> torch.Tensor:
    """Logits for encoded examples, in order."""
    device = next(model.parameters()).device
    logits = []
    with evaluating(model):
        for i in range(0, len(examples), batch_size):
            batch = collate(examples[i:i + batch_size], pad_token_id)
            logits.append(model(batch["input_ids"].to(device), batch["attention_mask"].to(device)).logits.float().cpu())
    return torch.cat(logits)


# ----------------------------------------------------------------------------------------------- the loop


@dataclass
class FinetuneHistory:
    train: list[dict] = field(default_factory=list)  # step, loss, lr
    eval: list[dict] = field(default_factory=list)  # epoch, step, seconds and the metrics (validation_metrics)


def finetune(model, train: list[dict], validation: list[dict], cfg: FinetuneConfig, pad_token_id: int,
             evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None) -> FinetuneHistory:
    """Train ``model`` on encoded examples (see :func:`collate`); evaluate after every epoch. ``evaluate`` scores
    the model (tagging and question answering pass their own); by default :func:`validation_metrics` on
    ``validation`` (classification metrics, or regression metrics for ``num_labels == 1``)."""
    from tqdm.auto import tqdm

    device = torch.device(cfg.device) if cfg.device else pick_device()
    precision = pick_precision(device)
    model.to(device).train()
    batches = StepBatches(train, cfg.batch_size, cfg.seed)
    cfg.steps_per_epoch = batches.steps_per_epoch
    # fp16 (a T4, or RFS_PRECISION=fp16 on any device): loss scaling on the model's device, and a fused AdamW that
    # skips an overflowed update itself, so that the scaler need not read its overflow flag (make_optimizer)
    optimizer = make_optimizer(model, cfg, device, grad_scaler=precision.use_grad_scaler)
    scheduler = make_scheduler(optimizer, cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.use_grad_scaler)
    history = FinetuneHistory()
    start = time.perf_counter()
    bar = tqdm(total=cfg.max_steps, desc="finetuning", unit="step", disable=not cfg.progress, dynamic_ncols=True)
    for step in range(cfg.max_steps):
        batch = {k: v.to(device) for k, v in collate(batches(step), pad_token_id).items()}
        with precision.autocast():
            loss = model(**batch).loss
        value = loss.item()  # the one read of the step (finetuning logs every step)
        if not math.isfinite(value):
            raise FloatingPointError(f"the loss is {value} at step {step}: lower the learning rate "
                                     f"(now {scheduler.get_last_lr()[0]:.2e})")
        scaler.scale(loss).backward()
        if cfg.max_grad_norm:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.max_grad_norm)
        lr = scheduler.get_last_lr()[0]  # the rate of this step's update (the schedule moves on after it)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        history.train.append({"step": step + 1, "loss": value, "lr": lr})
        bar.set_postfix({"loss": f"{value:.3f}"}, refresh=False)
        bar.update(1)
        if (step + 1) % cfg.steps_per_epoch == 0:
            metrics = evaluate(model) if evaluate is not None else validation_metrics(model, validation, pad_token_id)
            model.train()
            history.eval.append({"epoch": (step + 1) // cfg.steps_per_epoch, "step": step + 1,
                                 "seconds": time.perf_counter() - start, **metrics})
    bar.close()
    return history
