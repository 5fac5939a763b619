"""The course's trained artifacts, made once and cached under ``data/artifacts`` for the notebooks after the one
that makes them: the tokenizer of notebook 01, the model notebook 05 pretrains, and the 4-layer model notebook 07
looks at. Each is loaded when it is there and made (trained) when it is not, so that any notebook also runs alone.
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


def _cached_model(name: str, settings: dict, steps: int, verbose: bool, what: str):
    """``data/artifacts/{name}/final`` and its tokenizer, pretrained first with ``settings`` (``PretrainRun``'s fields; for ``steps`` steps)
    when it is missing or was made with fewer steps (a rehearsal's, or an older quick run's)."""
    run_dir = data_dir() / "artifacts" / name
    final = run_dir / "final"
    found = (final / "model.safetensors").is_file()
    made_with = trained_steps(run_dir) if found else None
    if not found or (made_with is not None and made_with < steps):
        if verbose:
            reason = (f"no model in data/artifacts/{name}" if not found else
                      f"the model in data/artifacts/{name} was trained for {made_with} steps, fewer than {steps}")
            print(f"{reason}: {what} first")
        pretrain(PretrainRun(**settings, steps=steps, checkpoint_every=0, output_dir=str(run_dir), no_progress=True,
                             overwrite=True))
    elif verbose:
        print(f"pretrained model found: data/artifacts/{name}/final"
              + (f" ({made_with} steps)" if made_with is not None else ""))
    return final, ByteLevelBPETokenizer.from_pretrained(final)


# For the time a notebook announces before it pretrains its own model. A T4: the step's FLOPs, counted as notebook 08
# counts them, over its fp16 peak at this share of it (an assumption for a small model on a T4: short kernels, fixed
# costs per step). A CPU: measured on 2 cores, a cpu-scale run of notebook 05 (2,600 steps in 8.7 minutes; on
# 2026-12-07 the same machine took 4.6, 10.1 and 12.6 minutes: its speed varies, and 8.7 is in the middle) and the
# gpu recipe's step in the fp16 rehearsal (about 7 s).
T4_PEAK_FLOPS, ASSUMED_T4_MFU = 65e12, 0.3  # the middle of benchmarks/t4_estimates.py's 25-35%, as notebook 08
CPU_RUN_STEPS, CPU_RUN_MINUTES, GPU_RECIPE_CPU_SECONDS_PER_STEP = 2600, 8.7, 7.0


def _minutes(minutes: float) -> str:
    if minutes < 1:
        return "under a minute"
    if minutes < 90:
        return f"about {round(minutes)} minute{'s' if round(minutes) != 1 else ''}"
    return f"about {minutes / 60:.0f} hours"


def pretraining_time(scale) -> str:
    """Roughly how long the whole pretraining recipe of ``scale`` (a ``settings.Scale``) takes, in words: on 2 CPU
    cores from runs measured there, and for the gpu scale on a T4, an estimate from the step's FLOPs."""
    from ..training import flops_per_token, head_flops_per_target

    recipe = scale.pretrain
    if scale.name == "gpu":
        config = recipe.model_config(recipe.vocab_size)
        tokens = recipe.steps * recipe.batch_size * recipe.seq_len
        targets = 0.15 * tokens  # the masked positions the sparse head predicts (at most 15%)
        flops = tokens * flops_per_token(config, recipe.seq_len) + targets * head_flops_per_target(config)
        return (f"{_minutes(flops / (T4_PEAK_FLOPS * ASSUMED_T4_MFU) / 60)} on a T4 GPU, an estimate from its "
                f"{flops:.1e} FLOPs at {ASSUMED_T4_MFU:.0%} of the T4's fp16 peak, not a measurement; "
                f"{_minutes(recipe.steps * GPU_RECIPE_CPU_SECONDS_PER_STEP / 60)} on 2 CPU cores (about "
                f"{GPU_RECIPE_CPU_SECONDS_PER_STEP:.0f} s a step there)")
    if scale.name == "cpu":
        return (f"{_minutes(CPU_RUN_MINUTES * recipe.steps / CPU_RUN_STEPS)} on 2 CPU cores (notebook 05's run of "
                f"{CPU_RUN_STEPS:,} steps there took {CPU_RUN_MINUTES} minutes)")
    return "seconds"


def course_pretrained_model(scale: str | None = None, verbose: bool = True):
    """The model notebook 05 pretrained at this scale, with its tokenizer: ``(model_dir, tokenizer)``.

    Read from ``data/artifacts/pretrain-{scale}/final`` when notebook 05 (or the command line with that output
    directory) wrote it. Otherwise, or when the model there was trained for fewer steps than the scale's recipe
    (a rehearsal's), pretrained here first with the scale's whole recipe, the run notebook 05 makes (its model,
    steps, batch, learning rate and seed), so that a later notebook opened alone gets a model as good as notebook
    05's, never a weaker one; the printout says so, and about how long it takes.
    """
    chosen = get_scale(scale)  # a rehearsal (RFS_REHEARSAL=1) cuts the recipe's steps here as everywhere
    recipe = chosen.pretrain
    what = (f"pretraining it with the {chosen.name} scale's whole recipe, as notebook 05 does ({recipe.steps} steps "
            f"of {recipe.batch_size} blocks of {recipe.seq_len} tokens, {recipe.preset} preset; "
            f"{pretraining_time(chosen)})")
    return _cached_model(f"pretrain-{chosen.name}", {"scale": chosen.name}, recipe.steps, verbose, what)


# Notebook 07 looks at a model with at least 4 layers x 4 heads. The gpu recipe's model is one (4 x 8); the cpu and
# smoke recipes train 2 x 2, so there a dedicated 4 x 4 model is pretrained once (cpu: a few minutes on 2 cores).
# Four post-LN layers need a gentler start than the recipe's two: a lower peak and a 10% warm-up.
ATTENTION_MODEL = {"smoke": (4, 4, 30, 2e-3), "cpu": (4, 4, 900, 1e-3)}  # layers, heads, steps, peak lr


def course_attention_model(scale: str | None = None, verbose: bool = True):
    """A pretrained model with at least 4 layers x 4 heads for notebook 07, with its tokenizer: at the gpu scale
    notebook 05's model, else a 4 x 4 model with the scale's recipe (vocabulary, blocks, batch, learning rate),
    trained once and cached in ``data/artifacts/attention-{scale}``."""
    chosen = get_scale(scale)
    name = chosen.name
    if name not in ATTENTION_MODEL:
        return course_pretrained_model(name, verbose)
    layers, heads, steps, lr = ATTENTION_MODEL[name]
    steps = chosen.cut(steps)  # a few in a rehearsal
    return _cached_model(f"attention-{name}", dict(scale=name, layers=layers, heads=heads,
                                                   dropout=0.1,  # RoBERTa's, whatever the scale's recipe says
                                                   lr=lr, warmup_steps=max(steps // 10, 1),
                                                   eval_every=max(steps // 3, 1)),
                         steps, verbose, f"pretraining a {layers}-layer, {heads}-head model")


def describe_pretrained(model_dir, since: float) -> str:
    """One line for a notebook that uses the pretrained model in ``model_dir`` (``course_pretrained_model``): made
    by this notebook (its files written after ``since``, a ``time.time()``) or found, and its held-out masked-token
    accuracy when the run's ``history.json`` belongs to this model (the command line writes it after the model; an
    older record is an older model's)."""
    from pathlib import Path

    weights, log = Path(model_dir) / "model.safetensors", Path(model_dir).parent / "history.json"
    made_here = weights.stat().st_mtime >= since
    held_out = []
    if log.is_file() and log.stat().st_mtime >= weights.stat().st_mtime:
        try:
            held_out = json.loads(log.read_text()).get("eval") or []
        except (ValueError, AttributeError):  # a damaged record says nothing
            held_out = []
    line = "the encoder below: " + ("pretrained just now by this notebook" if made_here else
                                    "saved before this notebook started (by notebook 05, or by a notebook opened alone)")
    if held_out and isinstance(held_out[-1], dict) and "accuracy" in held_out[-1]:
        return line + (f"; held-out masked-token accuracy {held_out[-1]['accuracy']:.1%} after "
                       f"{held_out[-1]['step']} steps")
    return line + "; its held-out masked-token accuracy is printed by notebook 05"


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
        checkpoint_every=args.checkpoint_every, checkpoint_dir=str(Path(args.output_dir) / "checkpoints"),
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


