"""Checkpoints of pretraining (notebook 05, section 7): written so that a crash never loses a run, read so that a
resumed run continues exactly where the interrupted one stopped.

A checkpoint is a folder ``step-NNNNNNN`` holding the model in transformers' layout (config.json +
model.safetensors, so any checkpoint is also a model directory) and ``training_state.pt``: the optimizer, schedule
and gradient-scaler states, the random state, the training settings and the history. It is written into a
temporary folder, flushed to disk and renamed into place; a damaged one is skipped, with a warning, for the newest
intact one before it. Loading uses ``torch.load(weights_only=True)``: no pickled code is ever run.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import asdict
from pathlib import Path

import torch

from .config import RobertaConfig
from .distributed import full_state_dict, load_optimizer_state, optimizer_state, barrier
from .files import fsync_dir, fsync_tree

STATE_FILE = "training_state.pt"


def save_checkpoint(trainer, directory: str | os.PathLike | None = None) -> Path:
    """Weights (config.json + model.safetensors) and training state in ``step-NNNNNNN/``, written into a
    temporary folder and renamed into place: a crash while saving leaves the earlier checkpoints whole.

    Tensors are whole and the optimizer state is keyed by parameter name, so a checkpoint written by N
    processes loads in any number. Every rank must call this (FSDP gathers); rank 0 writes."""
    root = Path(directory or trainer.cfg.checkpoint_dir or "checkpoints")
    final = root / f"step-{trainer.step:07d}"
    model_state = full_state_dict(trainer.model)
    optim_state = optimizer_state(trainer.model, trainer.optimizer)
    if trainer.world.is_main:
        root.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(root)
        tmp = root / f".tmp-step-{trainer.step:07d}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        trainer.model.save_pretrained(tmp, state_dict=model_state)
        state = {
            "step": trainer.step,
            "skipped_steps": trainer.skipped_steps,
            "optimizer": optim_state,
            "scheduler": trainer.scheduler.state_dict(),
            "scaler": trainer.scaler.state_dict(),
            "cpu_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "world_size": trainer.world.world_size,
            "training_config": json.dumps(asdict(trainer.cfg)),
            "history": json.dumps(asdict(trainer.history)),
        }
        torch.save(state, tmp / STATE_FILE)
        fsync_tree(tmp)  # on disk before the rename makes it the checkpoint
        old = root / f".old-{final.name}-{os.getpid()}"
        if final.exists():  # the same step saved again: the old copy moves aside, and goes once replaced
            os.replace(final, old)
        os.replace(tmp, final)
        fsync_dir(root)
        shutil.rmtree(old, ignore_errors=True)
        for old in sorted(root.glob("step-*"))[: -trainer.cfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


# The settings that decide the run's data order, masks and updates: a resumed run must use the same ones.
# (Precision, devices, micro-batch size, evaluation and checkpoint cadence do not change what is learned.)
RESUME_SETTINGS = ("seed", "batch_size", "lr", "warmup_steps", "weight_decay", "betas", "eps", "max_grad_norm",
                   "max_steps")


def load_checkpoint(trainer, path: str | os.PathLike, allow_more_steps: bool = False) -> Path:
    """Continue from a checkpoint folder, or from the newest intact ``step-*`` folder inside ``path`` (a damaged
    newer one is skipped with a warning that names its damaged file), written by any number of processes.
    Returns the folder loaded. In one process the random state is restored exactly; with several, each rank's
    dropout stream is seeded from (seed, step, rank)."""
    path = Path(path)
    candidates = checkpoints(path)[::-1] or [path]  # newest first; a step folder itself when given one
    problems = []
    for candidate in candidates:
        try:
            saved, weights, state = read_checkpoint(candidate)
        except (OSError, ValueError) as exc:
            problems.append(str(exc))
            if candidate is not candidates[-1]:
                warnings.warn(f"checkpoint {candidate.name} is damaged ({exc}); falling back to the one before it",
                              stacklevel=2)
            continue
        _restore(trainer, candidate, saved, weights, state, allow_more_steps)
        return candidate
    if len(candidates) == 1:
        raise ValueError(problems[0])
    raise ValueError(f"no intact checkpoint in {path}:\n  " + "\n  ".join(problems))

def _restore(trainer, path: Path, saved: dict, weights: dict, state: dict, allow_more_steps: bool) -> None:
    from .hub import load_state_dict_into

    saved = RobertaConfig.from_dict(saved).to_dict()
    ours = trainer.model.config.to_dict()
    differences = [f"{k}: checkpoint {saved.get(k)!r}, this run {ours.get(k)!r}" for k in sorted(set(saved) | set(ours))
                   if saved.get(k) != ours.get(k) and k not in ("id2label", "label2id", "architectures")]
    if differences:
        raise ValueError(f"{path} was trained with another model config: " + "; ".join(differences))
    trained = json.loads(state.get("training_config", "{}"))
    ours = json.loads(json.dumps(asdict(trainer.cfg)))  # tuples as lists, as they were saved
    changed = [k for k in RESUME_SETTINGS if k in trained and trained[k] != ours[k]]
    if allow_more_steps and changed == ["max_steps"] and ours["max_steps"] > trained["max_steps"]:
        changed = []  # more steps, on purpose: the schedule continues to the new end
    if changed:
        listed = "; ".join(f"{k}: checkpoint {trained[k]!r}, this run {ours[k]!r}" for k in changed)
        raise ValueError(f"{path} was trained with other settings ({listed}): resuming would silently change the "
                         "data order or the updates. Resume with the checkpoint's settings, start a new run in "
                         "another folder" + (", or allow more steps explicitly (--extend)"
                                             if "max_steps" in changed else ""))
    load_state_dict_into(trainer.model, weights)
    load_optimizer_state(trainer.model, trainer.optimizer, state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    if state["scaler"]:  # a run without loss scaling (fp32, bf16) saved an empty state: the new one starts fresh
        trainer.scaler.load_state_dict(state["scaler"])
    trainer.step, trainer.skipped_steps = state["step"], state["skipped_steps"]
    if trainer.world.distributed:
        torch.manual_seed(trainer.cfg.seed * 1_000_003 + 7_919 * (trainer.world.rank + 1) + 104_729 * trainer.step)
    else:
        torch.set_rng_state(state["cpu_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
    history = json.loads(state["history"])
    from .training import History

    trainer.history = History(train=history["train"], eval=history["eval"])


def checkpoints(root: str | os.PathLike) -> list[Path]:
    """The complete ``step-*`` folders under ``root``, oldest first (temporary folders of a crashed save are
    ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / STATE_FILE).is_file())


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    """The highest complete ``step-*`` folder under ``root``, or None."""
    done = checkpoints(root)
    return done[-1] if done else None


def read_checkpoint(path: Path) -> tuple[dict, dict, dict]:
    """(config dictionary, weights, training state) of a checkpoint folder; a ValueError naming the damaged or
    missing file when one of them cannot be read."""
    from .config import read_config_file
    from .hub import read_state_dict

    for name in ("config.json", "model.safetensors", STATE_FILE):
        if not (path / name).is_file():
            raise ValueError(f"{path / name} is missing; give a folder written by save_checkpoint")
    config = read_config_file(path / "config.json")
    weights = read_state_dict(path / "model.safetensors")
    try:
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated (OSError, RuntimeError, EOFError) or not a training state at all
        raise ValueError(f"{path / STATE_FILE}: cannot be read ({type(exc).__name__}: {exc}); the file is truncated "
                         "or damaged") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path / STATE_FILE}: holds a {type(state).__name__}, not a training state")
    missing = [k for k in ("step", "optimizer", "scheduler", "scaler", "cpu_rng", "history") if k not in state]
    if missing:
        raise ValueError(f"{path / STATE_FILE}: not a training state (lacks {', '.join(missing)})")
    for key in ("training_config", "history"):  # JSON text inside the state: garbage there must not pass
        try:
            json.loads(state.get(key, "{}"))
        except (TypeError, ValueError):
            raise ValueError(f"{path / STATE_FILE}: its {key} is not valid JSON; the file is damaged") from None
    return config, weights, state


def remove_stale_temporaries(root: str | os.PathLike) -> list[Path]:
    """Delete the temporary folders that interrupted saves left in ``root`` (``.tmp-step-*-PID`` and
    ``.old-step-*-PID`` of processes no longer running); returns what was removed."""
    removed = []
    for tmp in Path(root).glob(".*-step-*-*"):
        if not tmp.name.startswith((".tmp-", ".old-")) or not tmp.is_dir():
            continue
        pid = tmp.name.rsplit("-", 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
