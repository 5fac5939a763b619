"""The pretraining loop, readable in one place (notebook 05).

    for each step:
        batch = the step's packed blocks, masked afresh (dynamic masking)
        for each micro-batch:                      gradient accumulation
            with autocast: loss = model(micro).loss * (its share of the batch's masked tokens)
            (scaler.scale(loss) if fp16 else loss).backward()
        clip gradients; optimizer.step() (fp16: through the scaler); scheduler.step()
        every eval_every steps: masked-token loss, perplexity and accuracy on held-out blocks with fixed masks
        every checkpoint_every steps: weights (safetensors) + training state, written atomically

The optimizer and schedule (RoBERTa's Table 9) live in ``optim.py``, the checkpoints in ``checkpoints.py``. One
choice is the course's, not RoBERTa's: gradient clipping at 1.0 (RoBERTa did not clip). The data order and every
mask are functions of (seed, step), and the random state of dropout (every process's) is saved with each
checkpoint, so a resumed run continues exactly where the interrupted one was, in one process or on as many
processes as saved it; on another number of processes, the data and masks continue exactly and dropout's draws
do not (``checkpoints.load_checkpoint``).
"""

from __future__ import annotations

import inspect
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

# Re-exported (the names were public here before checkpoints, optimizer and schedule got their own modules):
from .checkpoints import (RESUME_SETTINGS, STATE_FILE, History, check_checkpoint_dir, checkpoints,  # noqa: F401
                          data_fingerprint, latest_checkpoint, load_checkpoint, new_run_id, remove_stale_temporaries,
                          save_checkpoint)
from .config import IGNORE_INDEX, RobertaConfig
from .distributed import all_reduce_sum, barrier, device_for, full_state_dict, gradient_sync, wrap_model, world
from .batching import StepBatchDataset, StepBatches, step_generator  # noqa: F401  (step_generator: re-exported)
from .model import evaluating, label_positions_of
from .optim import keep_optimizer_kind, linear_schedule, make_optimizer, make_scheduler, parameter_groups  # noqa: F401
from .settings import Precision, pick_device, pick_precision
# Dense bf16/fp16 tensor-core peaks in TFLOP/s (vendor data sheets; nanoGPT and PaLM use the same figures).
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "A10": 125.0,
               "L4": 121.0, "V100": 125.0, "T4": 65.0}


@dataclass
class TrainingConfig:
    max_steps: int
    batch_size: int = 32  # sequences per optimizer step, over all processes together
    micro_batch_size: int | None = None  # sequences per forward pass (per process); the rest accumulate
    lr: float = 6e-4
    warmup_steps: int = 0
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    max_grad_norm: float | None = 1.0  # RoBERTa did not clip; clipping makes small high-lr runs safer
    eval_every: int = 100
    eval_blocks: int = 256  # held-out blocks per evaluation
    checkpoint_every: int | None = None
    checkpoint_dir: str | None = None
    keep_checkpoints: int = 2
    seed: int = 0
    precision: str = "auto"  # auto (from the device), fp32, bf16, fp16
    compile: bool | None = None  # torch.compile the model; None: on CUDA (with a fallback to eager), not elsewhere
    device: str | None = None
    progress: bool = True
    activation_checkpointing: bool = False  # recompute each layer in backward: less memory, about 1/3 more compute
    fsdp: bool = False  # under torchrun: shard weights, gradients and optimizer states (else DDP replicates them)
    log_every: int = 10  # steps between reads of the losses from the device (each read waits for the device)
    num_workers: int = 0  # DataLoader worker processes that build the batches ahead (0: the main process builds each)
    pad_vocab_multiple: int = 64  # the MLM model's vocabulary rows rounded up to a multiple of this (1: none)

    def __post_init__(self):
        if self.max_steps < 1 or self.batch_size < 1:
            raise ValueError(f"max_steps={self.max_steps} and batch_size={self.batch_size} must be positive")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size={self.micro_batch_size} must be at least 1 (or None: the whole batch)")
        micro = self.micro_batch_size or self.batch_size
        if micro < 1 or self.batch_size % micro:
            raise ValueError(f"batch_size={self.batch_size} is not a multiple of micro_batch_size={micro}: the batch "
                             "is split into equal micro-batches (accumulation steps = batch_size / micro_batch_size)")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision={self.precision!r}: use auto, fp32, bf16 or fp16")
        if self.keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints={self.keep_checkpoints}: keep at least 1 (the latest checkpoint is "
                             "what a resumed run continues from)")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr}: the learning rate must be positive (RoBERTa-base: 6e-4)")
        if self.num_workers < 0:
            raise ValueError(f"num_workers={self.num_workers}: give 0 (batches built in the main process) or more")
        if self.log_every < 1:
            raise ValueError(f"log_every={self.log_every} must be at least 1 (1 reads every step's loss at once)")
        if isinstance(self.pad_vocab_multiple, bool) or not isinstance(self.pad_vocab_multiple, int) or \
                self.pad_vocab_multiple < 1:
            raise ValueError(f"pad_vocab_multiple={self.pad_vocab_multiple!r}: give a positive integer (64 pads the "
                             "vocabulary for the GPU's matrix engines, 1 leaves it as it is)")
        if self.warmup_steps < 0 or self.eval_every < 1:
            raise ValueError(f"warmup_steps={self.warmup_steps} must be at least 0 and eval_every={self.eval_every} "
                             "at least 1")
        self.betas = tuple(self.betas)

    @property
    def accumulation_steps(self) -> int:
        return self.batch_size // (self.micro_batch_size or self.batch_size)

    def per_process(self, world_size: int) -> tuple[int, int]:
        """(sequences per process per step, micro-batch size) when ``world_size`` processes share each step."""
        if self.batch_size % world_size:
            raise ValueError(f"batch_size={self.batch_size} cannot be split evenly over {world_size} processes: "
                             f"use a multiple of {world_size} (batch_size is the global batch of all processes)")
        share = self.batch_size // world_size
        micro = self.micro_batch_size or share
        if share % micro:
            raise ValueError(f"each of the {world_size} processes takes {share} sequences per step, not a multiple of "
                             f"micro_batch_size={micro}: choose a micro_batch_size that divides {share}")
        return share, micro


@contextmanager
def inputs_checked(model):
    """While the Trainer runs micro-batches whose inputs ``host_batch`` has checked on the CPU, the model skips its
    own checks, which would read device tensors and make the host wait for the device at every forward pass."""
    encoder = getattr(model, "roberta", model)
    before = getattr(encoder, "skip_input_checks", None)
    if before is None:  # another library's model (transformers' in the benchmarks): nothing to skip
        yield
        return
    encoder.skip_input_checks = True
    try:
        yield
    finally:
        encoder.skip_input_checks = before


# ----------------------------------------------------------------------------------------------- metrics


def flops_per_token(config: RobertaConfig, seq_len: int) -> float:
    """6N + 12 L H Q T: the matrix multiplies of a forward and backward pass per token (Kaplan et al. 2020; PaLM
    App. B), N the non-embedding parameters; attention's T x T products counted separately."""
    h, layers = config.hidden_size, config.num_hidden_layers
    ffn_matrices = 3 if config.feed_forward == "glu" else 2  # a gated layer has a gate matrix besides the two
    n = layers * (4 * h * h + ffn_matrices * h * config.intermediate_size)
    return 6 * n + 12 * layers * h * seq_len  # 12 L H Q T with H Q = hidden size


def head_flops_per_target(config: RobertaConfig) -> float:
    """6 (C^2 + V C): the MLM head's matrix multiplies, forward and backward, for one position it predicts (its
    dense layer and the tied decoder, over the real vocabulary: a padded one's extra columns are not useful work).
    The sparse head runs only on the predicted positions, so a step's FLOPs are
    ``tokens * flops_per_token + targets * head_flops_per_target`` (notebook 08, section 1)."""
    return 6 * config.hidden_size * (config.hidden_size + config.vocab_size)


def peak_flops(device: torch.device) -> float | None:
    """The device's dense bf16/fp16 peak in FLOP/s, when it is a known GPU."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_TFLOPS.items():
        if key in name:
            return tflops * 1e12
    return None


EVAL_MASK_SEED = 12345  # the held-out masks: the same at every evaluation of every run, so the numbers compare


def masked_heldout(blocks, collator, batch_size: int) -> list[dict]:
    """Held-out ``blocks`` masked once by ``collator`` with the fixed seed EVAL_MASK_SEED (the masks do not depend on
    the batching), cut into batches of ``batch_size``: what :func:`evaluate` reads, the Trainer's held-out set."""
    masked = collator(blocks, generator=torch.Generator().manual_seed(EVAL_MASK_SEED))
    return [{k: v[i:i + batch_size] for k, v in masked.items()} for i in range(0, len(blocks), batch_size)]


KINDS = ("mask", "random", "kept")  # what a labelled position shows the model: <mask>, another token, its own token


def target_kinds(input_ids: torch.Tensor, labels: torch.Tensor, mask_token_id: int) -> torch.Tensor:
    """For each labelled position of ``labels`` (flattened, in order), what the model is shown there, as an index
    into KINDS: 0 ``<mask>`` (80% of them), 1 a random other token (10%), 2 the true token itself (10%, "kept"; a
    random draw that happens to be the true token counts here too: the model sees the answer)."""
    selected = labels != IGNORE_INDEX
    shown, targets = input_ids[selected], labels[selected]
    kinds = torch.ones_like(targets)
    kinds[shown == targets] = 2
    kinds[shown == mask_token_id] = 0
    return kinds


def _scored(model, batches: list[dict], device: torch.device, precision: Precision):
    """Each held-out batch's loss, its labelled targets with their logits, and its input ids and labels."""
    with evaluating(model):
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            with precision.autocast():
                out = model(**batch)
            selected = batch["labels"] != IGNORE_INDEX
            targets = batch["labels"][selected]
            logits = out.logits[selected] if out.logits.dim() == 3 else out.logits  # dense logits (transformers)
            yield out.loss.float().item(), targets, logits, batch["input_ids"], batch["labels"]


@torch.no_grad()
def evaluate(model, batches: list[dict], device: torch.device, precision: Precision,
             mask_token_id: int | None = None) -> dict[str, float]:
    """Masked-token loss (nats), perplexity and accuracy over fixed, pre-masked held-out batches.

    The accuracy counts every labelled position, including the tenth that shows the model its own token (the
    "kept" share of 80/10/10), which a model can copy. Given ``mask_token_id``, the accuracy is also reported
    by what the position shows (KINDS): ``accuracy_mask`` (at ``<mask>``: the prediction task proper),
    ``accuracy_random`` and ``accuracy_kept``, with each kind's share of the targets (``share_mask``, ...)."""
    loss_sum, correct, count = 0.0, 0, 0
    by_kind = torch.zeros(2, len(KINDS), dtype=torch.long)  # rows: right, all
    for loss, targets, logits, input_ids, labels in _scored(model, batches, device, precision):
        loss_sum += loss * targets.numel()
        right = logits.argmax(-1) == targets
        correct += right.sum().item()
        count += targets.numel()
        if mask_token_id is not None:
            kinds = target_kinds(input_ids, labels, mask_token_id).cpu()
            by_kind[0] += torch.bincount(kinds[right.cpu()], minlength=len(KINDS))
            by_kind[1] += torch.bincount(kinds, minlength=len(KINDS))
    loss = loss_sum / max(count, 1)
    result = {"loss": loss, "perplexity": math.exp(min(loss, 50)), "accuracy": correct / max(count, 1)}
    if mask_token_id is not None:
        for k, kind in enumerate(KINDS):
            result[f"accuracy_{kind}"] = by_kind[0, k].item() / max(by_kind[1, k].item(), 1)
            result[f"share_{kind}"] = by_kind[1, k].item() / max(count, 1)
    return result


@torch.no_grad()
def target_outcomes(model, batches: list[dict], device: torch.device, precision: Precision,
                    mask_token_id: int) -> dict[str, torch.Tensor]:
    """Per labelled held-out target, in order, on the CPU: ``correct`` (bool: the top guess is the target), ``loss``
    (the cross-entropy in nats, float32) and ``kind`` (an index into KINDS): the per-item scores a paired bootstrap
    (``stats.paired_bootstrap``) resamples."""
    correct, losses, kinds = [], [], []
    for _, targets, logits, input_ids, labels in _scored(model, batches, device, precision):
        correct.append((logits.argmax(-1) == targets).cpu())
        losses.append(nn.functional.cross_entropy(logits.float(), targets, reduction="none").cpu())
        kinds.append(target_kinds(input_ids, labels, mask_token_id).cpu())
    return {"correct": torch.cat(correct), "loss": torch.cat(losses), "kind": torch.cat(kinds)}


@torch.no_grad()
def fill_mask(model, tokenizer, text: str, k: int = 5) -> list[tuple[str, float]]:
    """The top-k tokens for the first <mask> in ``text``, with their probabilities."""
    ids = tokenizer.encode(text)
    if tokenizer.mask_token_id not in ids:
        raise ValueError(f"no <mask> in {text!r}")
    device = next(model.parameters()).device
    with evaluating(model):
        logits = model(torch.tensor([ids], device=device)).logits[0, ids.index(tokenizer.mask_token_id)]
    top = logits.float().softmax(-1).topk(k)
    return [(tokenizer.decode([i]), p) for p, i in zip(top.values.tolist(), top.indices.tolist())]


# ----------------------------------------------------------------------------------------------- the trainer


class Trainer:
    """Masked-language-model pretraining of ``model`` on packed ``train_blocks`` (lists of ids), evaluated on
    ``eval_blocks`` masked by ``eval_collator`` (default: ``collator``). The model is moved to the device and its
    vocabulary padded in place (``cfg.pad_vocab_multiple``; its files keep the real rows)."""

    def __init__(self, model, train_blocks, collator, cfg: TrainingConfig, eval_blocks=None, eval_collator=None):
        self.cfg = cfg
        self.world = world()  # under torchrun: this process's rank among world_size; else rank 0 of 1
        self.per_process, self.micro = cfg.per_process(self.world.world_size)
        self.device = device_for(self.world, cfg.device) or (torch.device(cfg.device) if cfg.device else pick_device())
        self.precision = self._precision()
        if hasattr(model, "pad_vocabulary"):  # before the optimizer sees the parameters (notebook 08, section 1)
            model.pad_vocabulary(cfg.pad_vocab_multiple)
        self.model = model.to(self.device).train()
        if cfg.activation_checkpointing:
            self.model.set_activation_checkpointing(True)
        if cfg.fsdp and not self.world.distributed:
            raise ValueError("fsdp=True shards the model over processes: launch with torchrun --nproc_per_node=N "
                             "(N = 1 is allowed, to try it on one GPU), or leave fsdp off")
        wrapped = wrap_model(self.model, cfg.fsdp, self.device)  # DDP, FSDP, or the model itself
        self.eager_forward = wrapped
        self.compiled = cfg.compile if cfg.compile is not None else self.device.type == "cuda"
        self.forward = torch.compile(wrapped) if self.compiled else wrapped
        self._compile_tried = not self.compiled
        if self.world.distributed:  # dropout differs across ranks (the weights are equal: DDP broadcasts rank 0's)
            torch.manual_seed(cfg.seed * 1_000_003 + 7_919 * (self.world.rank + 1))
        self.collator = collator
        self.batches = StepBatches(train_blocks, cfg.batch_size, cfg.seed)
        self.step_data = StepBatchDataset(self.batches, collator, cfg.seed, cfg.max_steps)
        self._prefetched: dict[int, dict] | None = None  # steps the DataLoader's workers built ahead (train())
        # fp16: a fused AdamW, which takes the scaler's overflow flag as a tensor (apply_gradients)
        self.optimizer = make_optimizer(self.model, cfg, self.device, grad_scaler=self.precision.use_grad_scaler)
        self.scheduler = make_scheduler(self.optimizer, cfg)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.use_grad_scaler)
        if cfg.checkpoint_dir and self.world.is_main:  # what an interrupted save of an earlier start left behind
            remove_stale_temporaries(cfg.checkpoint_dir)
        self.step = 0
        self.run_id = new_run_id()  # names this run's checkpoints (checkpoints.py); a resume takes the saved one
        self.data_fingerprint = data_fingerprint(train_blocks)  # a resume must train on the same blocks
        self.skipped_steps = 0  # fp16 steps whose gradients overflowed (skipped by the scaler), counted on the device
        self.history = History()
        self.eval_batches = []
        if eval_blocks is not None and len(eval_blocks):
            blocks = [eval_blocks[i] for i in range(min(cfg.eval_blocks, len(eval_blocks)))]
            # by ``eval_collator`` when given: runs that train at different masking rates are then compared on the
            # same held-out masks
            self.eval_batches = masked_heldout(blocks, eval_collator or collator, self.micro)
        # evaluations report the accuracy at <mask> and at the other labelled positions apart (``evaluate``)
        self.mask_token_id = getattr(eval_collator or collator, "mask_token_id", None)
        sample = [train_blocks[i] for i in range(min(len(train_blocks), 64))]
        seq_len = max(len(b["input_ids"] if isinstance(b, dict) else b) for b in sample)
        self.takes_positions = "label_positions" in inspect.signature(model.forward).parameters
        self.flops_per_token = flops_per_token(model.config, seq_len)
        self.head_flops = head_flops_per_target(model.config)
        peak = peak_flops(self.device)  # one device's; the tokens counted are all processes' together
        self.peak = peak * self.world.world_size if peak else peak

    def _precision(self) -> Precision:
        if self.cfg.precision == "auto":
            return pick_precision(self.device)
        if self.cfg.precision != "fp32" and self.device.type not in ("cuda", "cpu"):
            raise ValueError(f"precision={self.cfg.precision!r} runs on CUDA or on the CPU (fp16 there rehearses a "
                             f"T4's path, slowly); on {self.device.type} use fp32 or precision='auto'")
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.cfg.precision]
        return Precision(self.cfg.precision, dtype, self.cfg.precision == "fp16", self.device.type)

    @property
    def skipped_steps(self) -> int:
        """fp16 steps whose gradients overflowed, so that the scaler skipped their update. Counted on the device
        (``apply_gradients``); reading the number waits for the device, so the loop never reads it."""
        return int(self._skipped_on_device)

    @skipped_steps.setter
    def skipped_steps(self, value: int) -> None:
        self._skipped_on_device = torch.tensor(int(value), dtype=torch.long, device=self.device)

    # ------------------------------------------------------------------------------------------- one step

    def train_step(self) -> float:
        """One optimizer step over the step's batch; returns the batch's mean loss (NaN or inf for an fp16 step
        that overflowed: the gradient scaler then skips the update and lowers its scale). Returning a number waits
        for the device; the training loop calls ``step_on_device`` instead and reads losses every ``log_every``."""
        return float(self.step_on_device())

    def step_on_device(self) -> torch.Tensor:
        """One optimizer step; the batch's mean loss stays on the device (a 0-d tensor), so the host does not wait
        for the step to finish and can prepare the next one."""
        loss = self.gradients_on_device()
        self.apply_gradients()
        return loss

    def compute_gradients(self) -> float:
        """Forward and backward over the step's batch (see ``gradients_on_device``); returns its mean loss."""
        return float(self.gradients_on_device())

    def host_batch(self) -> list[tuple[dict, float]]:
        """The step's batch, built and checked on the CPU before anything goes to the device: masked, the inputs
        validated once (token ids inside the vocabulary, shapes), and cut into this process's micro-batches, each
        with its share of the batch's masked tokens. Every value the step needs to know is read here, from CPU
        tensors, so the step itself never waits for the device."""
        batch = self._prefetched.pop(self.step, None) if self._prefetched else None
        if batch is None:
            batch = self.step_data[self.step]
        check = getattr(self.model, "check_inputs", None)
        if check is not None:
            check(batch["input_ids"], batch["attention_mask"])
        self.last_tokens = int(batch["attention_mask"].sum())
        targets = int((batch["labels"] != IGNORE_INDEX).sum())
        self.last_targets = targets
        self.last_flops = self.last_tokens * self.flops_per_token + targets * self.head_flops
        first = self.world.rank * self.per_process
        parts = []
        for start in range(first, first + self.per_process, self.micro):
            part = {k: v[start:start + self.micro] for k, v in batch.items()}
            if bool(part["attention_mask"].all()):  # full packed blocks: no mask, SDPA's fastest kernel
                part["attention_mask"] = None
            if self.takes_positions:  # the sparse head's rows, found here instead of by the device
                part["label_positions"] = label_positions_of(part["labels"])
            parts.append((part, int((part["labels"] != IGNORE_INDEX).sum()) / max(targets, 1)))
        return parts

    def gradients_on_device(self) -> torch.Tensor:
        """Forward and backward over the step's batch, split into micro-batches whose losses are weighted by their
        share of the batch's masked tokens: ``.grad`` ends up as the whole batch's gradient.

        With several processes, each takes its own slice of the step's rows (the whole batch is masked the same way
        on every rank, so the masks do not depend on the number of processes); DDP or FSDP averages the gradients
        over ranks, hence the factor ``world_size``, and synchronises only after the last micro-batch."""
        parts = self.host_batch()
        ranks = self.world.world_size
        total = torch.zeros((), device=self.device)
        with inputs_checked(self.model):
            for n, (part, share) in enumerate(parts):
                part = {k: self._to_device(v) for k, v in part.items() if v is not None}
                with gradient_sync(self.forward, self.model, sync=n == len(parts) - 1):
                    total = total + self._micro_step(part, share * ranks) / ranks
        return all_reduce_sum(total, self.device)

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """A CPU batch tensor to the device without a wait: on CUDA from pinned memory (a copy from pageable
        memory may synchronise with the host, NVIDIA's "API synchronization behavior"); the DataLoader's workers pin
        theirs already."""
        if self.device.type == "cuda" and not tensor.is_pinned():
            tensor = tensor.pin_memory()
        return tensor.to(self.device, non_blocking=True)

    def _micro_step(self, part: dict, weight: float) -> torch.Tensor:
        """Forward and backward of one micro-batch, its loss weighted by ``weight``; returns the weighted loss,
        detached, on the device (a non-finite loss is found when the losses are read: ``check_losses``).

        The first compiled micro-step falls back to eager if compilation fails, in the forward pass or in the
        backward pass (whose graph is compiled when it first runs); asked for explicitly with ``compile=True``, the
        failure is raised, and so is running out of memory. Before the eager retry, the gradients that a half-done
        backward pass may have left are dropped (the first micro-step of a step starts from none:
        ``apply_gradients`` sets them to None) and the random state is put back, so that the retry draws the
        dropout masks the failed attempt drew: the run then equals one that was eager from the start."""
        if self._compile_tried:
            return self._forward_backward(part, weight)
        self._compile_tried = True
        cpu_rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        try:
            return self._forward_backward(part, weight)
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 (whatever the compiler raises)
            if self.cfg.compile:
                raise
            import warnings

            warnings.warn(f"torch.compile failed ({type(exc).__name__}: {str(exc)[:200]}); training goes on eager. "
                          "TrainingConfig(compile=False) (--no-compile) skips the attempt", stacklevel=2)
            self.forward, self.compiled = self.eager_forward, False
            for p in self.model.parameters():
                p.grad = None
            torch.set_rng_state(cpu_rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state(cuda_rng, self.device)
            return self._forward_backward(part, weight)

    def _forward_backward(self, part: dict, weight: float) -> torch.Tensor:
        with self.precision.autocast():
            loss = self.forward(**part).loss
        self.scaler.scale(loss * weight).backward()
        return loss.detach().float() * weight

    def check_losses(self, steps: list[int], losses: list[float]) -> None:
        """Stop at the first non-finite loss among the steps just read (fp16 goes on: its scaler skips such steps)."""
        if self.precision.use_grad_scaler:
            return
        for step, loss in zip(steps, losses):
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"the loss is {loss} at step {step}: training diverged; lower the learning rate (now "
                    f"{self.scheduler.get_last_lr()[0]:.2e}) or use another precision (now {self.precision.name})")

    def apply_gradients(self) -> None:
        """Clip, step the optimizer (through the scaler in fp16) and the schedule, without waiting for the device.

        In fp16, ``unscale_`` divides the gradients by the loss scale (before clipping, so that the clip sees the
        true norm) and records on the device whether any is inf or NaN. The optimizer is a fused AdamW
        (``make_optimizer``), to which ``scaler.step`` hands that flag as a tensor: the kernel skips the update on
        the device, where a plain optimizer would make the scaler read the flag first. The scaler then halves its
        scale after an overflow (``update``, on the device too), which is how a skipped step is counted: the scale
        went down."""
        if self.cfg.max_grad_norm:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        if self.scaler.is_enabled():
            # the scale as a device tensor (get_scale() would read it); created by the step's first scaler.scale
            scale_before = self.scaler._get_scale_async().clone()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scaler.is_enabled():  # update() changes the scale in place; only an overflow makes it smaller
            self._skipped_on_device += self.scaler._get_scale_async() < scale_before
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1

    # ------------------------------------------------------------------------------------------- the loop

    def train(self, until: int | None = None) -> History:
        """Train to ``cfg.max_steps`` (or to step ``until``), evaluating and checkpointing on the way."""
        from tqdm.auto import tqdm

        stop = min(until or self.cfg.max_steps, self.cfg.max_steps)
        if self.cfg.checkpoint_every and self.cfg.checkpoint_dir:  # before the first step, not at the first save
            check_checkpoint_dir(self, self.cfg.checkpoint_dir)
        bar = tqdm(total=stop, initial=self.step, desc="pretraining", unit="step", disable=not (self.cfg.progress and self.world.is_main),
                   dynamic_ncols=True)
        window_start, window_tokens, window_flops = time.perf_counter(), 0, 0.0
        if self.step == 0 and self.eval_batches and not self.history.eval:
            self.history.eval.append({"step": 0, **evaluate(self.model, self.eval_batches, self.device,
                                                             self.precision, self.mask_token_id)})
        pending: list[tuple[dict, torch.Tensor]] = []  # records whose loss is still on the device

        def read_losses():
            # one wait for the device per log_every steps: every pending loss is read at once
            if not pending:
                return
            values = torch.stack([loss for _, loss in pending]).tolist()
            self.check_losses([record["step"] - 1 for record, _ in pending], values)
            for (record, _), value in zip(pending, values):
                record["loss"] = value
            record = pending[-1][0]
            postfix = {"loss": f"{record['loss']:.3f}", "lr": f"{record['lr']:.2e}",
                       "tok/s": f"{record['tokens_per_s']:,.0f}"}
            if "mfu" in record:
                postfix["mfu"] = f"{record['mfu']:.1%}"
            bar.set_postfix(postfix, refresh=False)
            pending.clear()

        loader = self._loader(self.step, stop)
        while self.step < stop:
            if loader is not None:
                self._prefetched = {self.step: next(loader)}
            lr = self.scheduler.get_last_lr()[0]  # the rate this step's update uses (the schedule moves on after it)
            try:
                loss = self.step_on_device()
            except torch.OutOfMemoryError:
                raise RuntimeError(
                    f"CUDA ran out of memory at step {self.step} with micro-batches of "
                    f"{self.micro} sequences: set a smaller micro_batch_size "
                    "(the same batch_size then accumulates more micro-batches), a shorter sequence, or a smaller "
                    "model") from None
            window_tokens += self.last_tokens
            window_flops += self.last_flops
            elapsed = time.perf_counter() - window_start
            rate = window_tokens / elapsed if elapsed > 0 else 0.0
            record = {"step": self.step, "loss": None, "lr": lr, "tokens_per_s": rate}
            if self.peak and elapsed > 0:  # the layers on every token, the head on the predicted ones
                record["mfu"] = window_flops / elapsed / self.peak
            self.history.train.append(record)
            pending.append((record, loss))
            bar.update(1)
            evaluating = self.eval_batches and (self.step % self.cfg.eval_every == 0 or
                                                self.step == self.cfg.max_steps)
            saving = self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0
            if len(pending) >= self.cfg.log_every or evaluating or saving or self.step == stop:
                read_losses()  # before an evaluation or a checkpoint: never save the weights of a diverged step
            if evaluating:
                result = evaluate(self.model, self.eval_batches, self.device, self.precision, self.mask_token_id)
                self.history.eval.append({"step": self.step, **result})
                if self.cfg.progress and self.world.is_main:
                    at_mask = f" (at <mask> {result['accuracy_mask']:.1%})" if "accuracy_mask" in result else ""
                    bar.write(f"step {self.step}: held-out loss {result['loss']:.3f}, perplexity "
                              f"{result['perplexity']:.1f}, masked-token accuracy {result['accuracy']:.1%}{at_mask}")
                window_start, window_tokens, window_flops = time.perf_counter(), 0, 0.0  # not evaluation time
            if saving:
                self.save_checkpoint()
        self._prefetched = None
        bar.close()
        return self.history

    def _loader(self, start: int, stop: int):
        """With ``num_workers``, an iterator over the batches of steps start .. stop - 1, built ahead in worker
        processes (in pinned memory on CUDA, so that the copies to the device need not wait); else None."""
        if not self.cfg.num_workers or start >= stop:
            return None
        from torch.utils.data import DataLoader

        return iter(DataLoader(self.step_data, batch_size=None, sampler=range(start, stop),
                               num_workers=self.cfg.num_workers, pin_memory=self.device.type == "cuda",
                               prefetch_factor=4, persistent_workers=False,
                               # its own generator: drawing the workers' seeds from the global one would move
                               # the stream that dropout uses, and the run would no longer equal the main-process one
                               generator=torch.Generator().manual_seed(self.cfg.seed)))

    # ------------------------------------------------------------------------------------------- checkpoints

    def save_model(self, directory: str | os.PathLike) -> Path:
        """The model alone in transformers' layout (config.json + model.safetensors), written by rank 0 from whole
        tensors (gathered first under FSDP: every rank must call this)."""
        state = full_state_dict(self.model)
        if self.world.is_main:
            self.model.save_pretrained(directory, state_dict=state)
        barrier()
        return Path(directory)

    def save_checkpoint(self, directory: str | os.PathLike | None = None) -> Path:
        """Weights (config.json + model.safetensors) and training state in ``step-NNNNNNN/``, written atomically
        (``checkpoints.save_checkpoint``). Every rank must call this (FSDP gathers); rank 0 writes."""
        return save_checkpoint(self, directory)

    RESUME_SETTINGS = RESUME_SETTINGS

    def load_checkpoint(self, path: str | os.PathLike, allow_more_steps: bool = False) -> Path:
        """Continue from a checkpoint folder, or from the newest intact one inside ``path``; returns the folder
        loaded (``checkpoints.load_checkpoint``). The optimizer stays fused or plain as this run chose (its precision
        may differ from the checkpoint's)."""
        loaded = load_checkpoint(self, path, allow_more_steps)
        keep_optimizer_kind(self.optimizer)
        return loaded
