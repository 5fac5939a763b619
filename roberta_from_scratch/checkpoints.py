"""Checkpoints of pretraining (notebook 05, section 7): written so that a crash never loses a run, read so that a
resumed run continues exactly where the interrupted one stopped.

A checkpoint is a folder ``step-NNNNNNN`` holding the model in transformers' layout (config.json +
model.safetensors, so any checkpoint is also a model directory) and ``training_state.pt``: the optimizer, schedule
and gradient-scaler states, the random state, the training settings and the history. It is written into a
temporary folder, flushed to disk and renamed into place; a damaged one is skipped, with a warning, for the newest
intact one before it. Loading uses ``torch.load(weights_only=True)``: no pickled code is ever run.

Checkpoints belong to a run: each folder's ``run.json`` names the run that wrote it (a random id made when the
Trainer starts, kept when it resumes). Only the run's own checkpoints are pruned, and a run refuses to write into a
folder that holds another run's step folders (complete or not), whose pruning would otherwise delete the new
checkpoints as they are written, or whose newer steps a later resume would take for this run's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .config import RobertaConfig
from .distributed import all_gather_objects, all_reduce_sum, barrier, full_state_dict, full_tensor, like
from .files import fsync_dir, fsync_tree
from .weights import fit_vocabulary, load_state_dict_into, read_state_dict

STATE_FILE = "training_state.pt"
RUN_FILE = "run.json"


@dataclass
class History:
    """What a run recorded, saved with each checkpoint."""

    train: list[dict] = field(default_factory=list)  # step, loss, lr (the rate of that step's update), tokens_per_s
    eval: list[dict] = field(default_factory=list)  # step, loss, perplexity, accuracy


def new_run_id() -> str:
    return uuid.uuid4().hex


def run_of(folder: Path) -> str | None:
    """The id of the run that wrote a step folder, or None (no ``run.json``: a damaged folder, or one written
    before checkpoints carried run ids)."""
    try:
        return json.loads((folder / RUN_FILE).read_text())["run_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def step_folders(root: str | os.PathLike) -> list[Path]:
    """Every ``step-*`` folder under ``root``, complete or not, oldest first."""
    root = Path(root)
    return sorted(p for p in root.glob("step-*") if p.is_dir()) if root.is_dir() else []


def check_checkpoint_dir(trainer, root: str | os.PathLike) -> None:
    """Refuse a checkpoint folder that holds step folders of another run (every rank raises: rank 0 looks, and
    tells the others)."""
    root = Path(root)
    others = [p.name for p in step_folders(root) if run_of(p) != trainer.run_id] if trainer.world.is_main else []
    if all_reduce_sum(float(len(others)), trainer.device) == 0:
        return
    shown = ", ".join(others[:4]) + (f" and {len(others) - 4} more" if len(others) > 4 else "")
    raise ValueError(f"{root} holds checkpoints of another run ({shown or 'seen by rank 0'}): this run would prune "
                     "them or be taken for them. Resume that run (load_checkpoint, or --resume), write this one "
                     "to another folder, or move those folders away")


def data_fingerprint(blocks) -> str:
    """A short hash of the training blocks (their number and 256 of them, evenly spaced): another corpus, tokenizer
    or block length gives another fingerprint, and a resumed run must train on the data it started with."""
    count = len(blocks)
    picked = sorted({i * count // 256 for i in range(256)}) if count else []
    digest = hashlib.sha256(str(count).encode())
    for i in picked:
        block = blocks[i]
        ids = block["input_ids"] if isinstance(block, dict) else block
        digest.update(json.dumps([int(t) for t in ids]).encode())
    return digest.hexdigest()[:16]


def save_checkpoint(trainer, directory: str | os.PathLike | None = None) -> Path:
    """Weights (config.json + model.safetensors) and training state in ``step-NNNNNNN/``, written into a
    temporary folder and renamed into place: a crash while saving leaves the earlier checkpoints whole.

    Tensors are whole and the optimizer state is keyed by parameter name, so a checkpoint written by N
    processes loads in any number. Every rank must call this (FSDP gathers); rank 0 writes."""
    root = Path(directory or trainer.cfg.checkpoint_dir or "checkpoints")
    check_checkpoint_dir(trainer, root)
    final = root / f"step-{trainer.step:07d}"
    model_state = full_state_dict(trainer.model)
    optim_state = optimizer_state(trainer.model, trainer.optimizer)
    # every process's random state (dropout's streams), so that a run resumed on as many processes is exact
    rng = all_gather_objects({"cpu": torch.get_rng_state(),
                              "cuda": torch.cuda.get_rng_state(trainer.device) if trainer.device.type == "cuda"
                              else None})
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
            "rank_rng": rng,
            "world_size": trainer.world.world_size,
            "run_id": trainer.run_id,
            "data_fingerprint": trainer.data_fingerprint,
            "training_config": json.dumps(asdict(trainer.cfg)),
            "history": json.dumps(asdict(trainer.history)),
        }
        torch.save(state, tmp / STATE_FILE)
        (tmp / RUN_FILE).write_text(json.dumps({"run_id": trainer.run_id, "step": trainer.step}) + "\n")
        fsync_tree(tmp)  # on disk before the rename makes it the checkpoint
        old = root / f".old-{final.name}-{os.getpid()}"
        if final.exists():  # the same step saved again: the old copy moves aside, and goes once replaced
            os.replace(final, old)
        os.replace(tmp, final)
        fsync_dir(root)
        shutil.rmtree(old, ignore_errors=True)
        ours = [p for p in checkpoints(root) if run_of(p) == trainer.run_id]
        for old in ours[: -trainer.cfg.keep_checkpoints]:  # this run's only (check_checkpoint_dir)
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
    Returns the folder loaded. The random state (dropout's) is restored exactly in one process, and on as many
    processes as wrote the checkpoint; on another number of processes each rank's dropout stream is seeded from
    (seed, step, rank), with a warning: the data order and the masks are the same, the dropout draws are not."""
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
    if state.get("data_fingerprint") not in (None, trainer.data_fingerprint):
        raise ValueError(f"{path} was trained on other data (another corpus, tokenizer or block length: its blocks' "
                         f"fingerprint is {state['data_fingerprint']}, this run's {trainer.data_fingerprint}): "
                         "resuming would continue on other data. Resume with the checkpoint's corpus, or start a new "
                         "run in another folder")
    if changed:
        listed = "; ".join(f"{k}: checkpoint {trained[k]!r}, this run {ours[k]!r}" for k in changed)
        raise ValueError(f"{path} was trained with other settings ({listed}): resuming would silently change the "
                         "data order or the updates. Resume with the checkpoint's settings, start a new run in "
                         "another folder" + (", or allow more steps explicitly (--extend)"
                                             if "max_steps" in changed else ""))
    report = load_state_dict_into(trainer.model, weights)
    if report.missing or report.unused:  # a resumed run continues the saved weights, all of them, or nothing
        raise ValueError(f"{path / 'model.safetensors'} does not hold this model's weights ({report}): the file is "
                         "damaged or was written by another model; resume from another checkpoint")
    load_optimizer_state(trainer.model, trainer.optimizer, state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    if state["scaler"]:  # a run without loss scaling (fp32, bf16) saved an empty state: the new one starts fresh
        trainer.scaler.load_state_dict(state["scaler"])
    trainer.step, trainer.skipped_steps = state["step"], state["skipped_steps"]
    trainer.run_id = state.get("run_id")  # this run goes on (None: a checkpoint from before run ids)
    processes, saved_processes = trainer.world.world_size, state.get("world_size", 1)
    saved_rng = state.get("rank_rng") or []
    if processes == saved_processes == 1:  # one process: exact
        torch.set_rng_state(state["cpu_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
    elif processes == saved_processes and len(saved_rng) == processes:  # as many processes: each rank's own, exact
        mine = saved_rng[trainer.world.rank]
        torch.set_rng_state(mine["cpu"])
        if mine["cuda"] is not None and trainer.device.type == "cuda":
            torch.cuda.set_rng_state(mine["cuda"], trainer.device)
    else:
        if trainer.world.is_main:
            warnings.warn(f"{path} was written by {saved_processes} process(es) and resumes on {processes}: the "
                          "data order and masks continue exactly, dropout's random draws do not", stacklevel=3)
        torch.manual_seed(trainer.cfg.seed * 1_000_003 + 7_919 * (trainer.world.rank + 1) + 104_729 * trainer.step)
    history = json.loads(state["history"])
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
    rng = state.get("rank_rng", [])
    if not isinstance(rng, list) or not all(isinstance(r, dict) and isinstance(r.get("cpu"), torch.Tensor)
                                            and r["cpu"].dtype == torch.uint8 for r in rng):
        raise ValueError(f"{path / STATE_FILE}: its random states (rank_rng) are not a list of generator states; the "
                         "file is damaged")
    if not isinstance(state.get("run_id"), (str, type(None))):
        raise ValueError(f"{path / STATE_FILE}: its run_id is not a text; the file is damaged")
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


# ----------------------------------------------------------------------------------------------- optimizer state


def optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's state keyed by parameter name with whole tensors: loadable whatever the number of ranks."""
    names = {p: n for n, p in model.named_parameters()}
    vocab = model.config.vocab_size
    state = {}
    for p, values in optimizer.state.items():  # a padded vocabulary's states cut to the real rows, as its weights
        state[names[p]] = {k: fit_vocabulary(names[p], full_tensor(v).detach().cpu(), vocab, vocab)
                           if torch.is_tensor(v) and v.dim() else
                           (v.detach().cpu() if torch.is_tensor(v) else v) for k, v in values.items()}
    groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [names[p] for p in g["params"]]}
              for g in optimizer.param_groups]
    return {"state": state, "param_groups": groups}


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Inverse of :func:`optimizer_state`, sharding each tensor like its parameter."""
    names = {p: n for n, p in model.named_parameters()}
    current = [[names[p] for p in g["params"]] for g in optimizer.param_groups]
    if current != [g["params"] for g in saved["param_groups"]]:
        raise ValueError("the checkpoint's optimizer holds other parameters (or another grouping) than this run's: "
                         "was it saved by another model or another version of the package?")
    position = {name: i for i, name in enumerate(n for g in current for n in g)}
    params = {n: p for p, n in names.items()}
    vocab = model.config.vocab_size
    state = {position[name]: {k: like(params[name], fit_vocabulary(name, v, params[name].size(0), vocab)
                                      if v.size(0) < params[name].size(0) else v)  # padded, never cut
                              if torch.is_tensor(v) and v.dim() else v for k, v in values.items()}
             for name, values in saved["state"].items()}
    optimizer.load_state_dict({"state": state, "param_groups": [
        {**{k: v for k, v in g.items() if k != "params"}, "params": [position[n] for n in g["params"]]}
        for g in saved["param_groups"]]})
