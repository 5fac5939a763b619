"""The course's trained artifacts, made once and cached under ``data/artifacts`` for the notebooks after the one
that makes them: the tokenizer of notebook 01 (trained when it is missing, so that any notebook also runs alone),
and the pretraining run itself (``PretrainRun``, ``pretrain``), which the command line, notebook 05 and the
reference model share. The pretrained model a later notebook builds on is chosen in ``reference.py``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
import os
from pathlib import Path

import torch

from ..data import data_dir, load_corpus
from ..files import writable_dir
from ..settings import SCALES, get_scale, rehearsed
from ..tokenizer import MERGES_FILE, VOCAB_FILE, ByteLevelBPETokenizer


def course_tokenizer(vocab_size: int | None = None, rebuild: bool = False, verbose: bool = True
                     ) -> ByteLevelBPETokenizer:
    """The tokenizer notebook 01 trains, for the notebooks after it.

    Loaded from ``data/artifacts/tokenizer-python-docs-{vocab_size}`` when notebook 01 (or an earlier call) saved
    it there; otherwise trained on the python-docs train split (about a second) and saved. ``vocab_size``
    defaults to the scale's (``RFS_SCALE``).
    """
    vocab_size = vocab_size or get_scale().vocab_size
    directory = data_dir() / "artifacts" / f"tokenizer-python-docs-{vocab_size}"
    if not rebuild and (directory / VOCAB_FILE).is_file() and (directory / MERGES_FILE).is_file():
        tokenizer = ByteLevelBPETokenizer.from_pretrained(directory)
        source = "loaded"
    else:
        texts = load_corpus("python-docs", verbose=False)["train"]["text"]
        tokenizer = ByteLevelBPETokenizer.train(list(texts), vocab_size=vocab_size)
        tokenizer.save(directory)
        source = "trained and saved"
    if verbose:
        print(f"{tokenizer} {source}: data/artifacts/{directory.name}")
    return tokenizer


def trained_steps(run_dir) -> int | None:
    """How many optimizer steps made the model in ``run_dir/final``: from the command line's ``history.json``, else
    from the newest checkpoint notebook 05 leaves (``checkpoints/step-N``); None when neither says."""
    from pathlib import Path

    from ..checkpoints import latest_checkpoint

    run_dir = Path(run_dir)
    history = run_dir / "history.json"
    if history.is_file():
        try:
            train = json.loads(history.read_text()).get("train") or []
        except (ValueError, AttributeError):  # a damaged file says nothing
            train = []
        if train and isinstance(train[-1], dict) and "step" in train[-1]:
            return int(train[-1]["step"])
    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    if checkpoint is not None and checkpoint.name.startswith("step-") and checkpoint.name[5:].isdigit():
        return int(checkpoint.name[5:])
    return None


# ----------------------------------------------------------------------------------------------- a pretraining run

RECIPES = {name: scale.pretrain for name, scale in SCALES.items()}  # one source: settings.SCALES (as written)


@dataclass
class PretrainRun:
    """The settings of a pretraining run: the command line's options (``python -m roberta_from_scratch pretrain``
    reads them into this), None where the scale's recipe decides."""

    output_dir: str
    scale: str | None = None  # default: RFS_SCALE
    corpus: str = "python-docs"
    preset: str | None = None
    hidden_size: int | None = None
    layers: int | None = None
    heads: int | None = None
    vocab_size: int | None = None
    seq_len: int | None = None
    batch_size: int | None = None
    micro_batch_size: int | None = None
    dropout: float | None = None
    lr: float | None = None
    steps: int | None = None
    warmup_steps: int | None = None
    eval_every: int | None = None
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    precision: str = "auto"
    compile: bool | None = None
    workers: int = 0
    log_every: int = 10
    pad_vocab: int = 64
    activation_checkpointing: bool = False
    fsdp: bool = False
    device: str | None = None
    seed: int = 0
    resume: bool = False
    extend: bool = False
    overwrite: bool = False
    no_progress: bool = False


def check_output_dir(output_dir: str, resume: bool, overwrite: bool) -> Path:
    """Before the first step: an output folder that can be written, and that holds no other run's checkpoints (any
    ``step-*`` folder, complete or not) or final model, unless the run continues them (``--resume``) or replaces
    them (``--overwrite``)."""
    import shutil

    from ..checkpoints import step_folders

    out = writable_dir(output_dir)
    checkpoints, final = out / "checkpoints", out / "final"
    earlier = [p.name for p in step_folders(checkpoints)] + (["final"] if final.exists() else [])
    if earlier and not resume:
        if not overwrite:
            shown = ", ".join(earlier[:3]) + (f" and {len(earlier) - 3} more" if len(earlier) > 3 else "")
            raise ValueError(f"{out} holds an earlier run ({shown}): --resume continues it, --overwrite deletes it "
                             "and starts over, or choose another --output-dir")
        shutil.rmtree(checkpoints, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)
    return out


def _pick(value, default):
    """An option's value, or the recipe's default when the option was not given."""
    return default if value is None else value


def training_config(args: PretrainRun, recipe):
    """The run's TrainingConfig: the options given, the recipe's values for the rest."""
    from ..training import TrainingConfig

    return TrainingConfig(
        max_steps=_pick(args.steps, recipe.steps), batch_size=_pick(args.batch_size, recipe.batch_size),
        micro_batch_size=args.micro_batch_size, lr=_pick(args.lr, recipe.lr),
        warmup_steps=_pick(args.warmup_steps, recipe.warmup_steps), eval_every=_pick(args.eval_every, recipe.eval_every),
        checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints,
        checkpoint_dir=str(Path(args.output_dir) / "checkpoints"),
        seed=args.seed, precision=args.precision, compile=args.compile, device=args.device,
        progress=not args.no_progress, activation_checkpointing=args.activation_checkpointing, fsdp=args.fsdp,
        num_workers=args.workers, log_every=args.log_every, pad_vocab_multiple=args.pad_vocab)


def pretrain(args: PretrainRun):
    """Pretrain as ``args`` says (what the command line reads, or what the course's cached models need): the
    tokenizer, the corpus packed into blocks, the Trainer, checkpoints, and the final model with its history in
    ``output_dir``. Bad settings raise ValueError before any work. Returns the Trainer."""
    from ..data import load_corpus  # looked up at call time (a test replaces it)
    from ..distributed import close_distributed, init_distributed, main_first
    from ..masking import DataCollatorForMLM
    from ..model import RobertaForMaskedLM
    from ..packing import pack_dataset
    from ..training import Trainer, latest_checkpoint

    rank = init_distributed(args.device)  # under torchrun: join the other processes; else rank 0 of 1
    say = print if rank.is_main else (lambda *a, **k: None)
    if rank.is_main:  # before any work: a run that cannot save its model must not train first
        check_output_dir(args.output_dir, args.resume, args.overwrite)

    scale = get_scale(args.scale)
    recipe = RECIPES[scale.name]
    if scale.rehearsal:  # RFS_REHEARSAL=1: the recipe's steps cut to a few, as in the notebooks
        recipe = rehearsed(dataclasses.replace(scale, pretrain=recipe)).pretrain
    recipe = dataclasses.replace(  # the command line's choices replace the recipe's
        recipe, preset=_pick(args.preset, recipe.preset), hidden_size=_pick(args.hidden_size, recipe.hidden_size),
        vocab_size=_pick(args.vocab_size, recipe.vocab_size), seq_len=_pick(args.seq_len, recipe.seq_len),
        dropout=_pick(args.dropout, recipe.dropout))
    torch.manual_seed(args.seed)  # the same initial weights in every process
    cfg = training_config(args, recipe)  # settings that fit no run: a ValueError before any work
    with main_first():  # rank 0 builds the caches, the others read them
        tokenizer = course_tokenizer(recipe.vocab_size, verbose=rank.is_main)
        corpus = load_corpus(args.corpus, verbose=rank.is_main)
        train_blocks = list(pack_dataset(corpus["train"], tokenizer, recipe.seq_len)["input_ids"])
        eval_blocks = list(pack_dataset(corpus["validation"], tokenizer, recipe.seq_len)["input_ids"])
    shape = {key: value for key, value in (("num_hidden_layers", args.layers), ("num_attention_heads", args.heads))
             if value is not None}
    config = recipe.model_config(tokenizer.vocab_size, **shape)
    trainer = Trainer(RobertaForMaskedLM(config), train_blocks, DataCollatorForMLM(tokenizer), cfg, eval_blocks)
    if args.resume:
        if latest_checkpoint(cfg.checkpoint_dir) is None:
            say(f"no checkpoint in {cfg.checkpoint_dir}: starting from step 0")
        else:  # the newest intact checkpoint (a damaged newer one is skipped with a warning)
            try:
                checkpoint = trainer.load_checkpoint(cfg.checkpoint_dir, allow_more_steps=args.extend)
            except ValueError as error:  # damaged checkpoints or changed settings: the message says what to do
                raise ValueError(f"cannot resume: {error}") from None
            say(f"resumed from {checkpoint} at step {trainer.step}")
    processes = (f"; {rank.world_size} process{'es' * (rank.world_size > 1)} ({'FSDP' if args.fsdp else 'DDP'})"
                 if rank.distributed else "")
    say(f"model: {trainer.model.num_parameters():,} parameters ({recipe.preset}, hidden {config.hidden_size}); "
          f"{len(train_blocks):,} blocks of {recipe.seq_len} tokens; {cfg.max_steps} steps of {cfg.batch_size}; "
          f"{trainer.device} {trainer.precision.name}{processes}")
    history = trainer.train()
    final = trainer.save_model(Path(args.output_dir) / "final")
    if rank.is_main:
        tokenizer.save(final)
        (Path(args.output_dir) / "history.json").write_text(json.dumps({"train": history.train,
                                                                        "eval": history.eval}))
    close_distributed()
    if history.eval:
        last = history.eval[-1]
        say(f"final: held-out loss {last['loss']:.3f}, perplexity {last['perplexity']:.1f}, masked-token accuracy "
              f"{last['accuracy']:.1%}; saved to {os.path.relpath(final)}")
    return trainer


