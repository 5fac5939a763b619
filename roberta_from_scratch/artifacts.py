"""The course's trained artifacts, made once and cached under ``data/artifacts`` for the notebooks after the one
that makes them: the tokenizer of notebook 01, the model notebook 05 pretrains, and the 4-layer model notebook 07
looks at. Each is loaded when it is there and made (trained) when it is not, so that any notebook also runs alone.
"""

from __future__ import annotations

import json

from .data import data_dir, load_corpus
from .settings import get_scale
from .tokenizer import MERGES_FILE, VOCAB_FILE, ByteLevelBPETokenizer


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

    from .checkpoints import latest_checkpoint

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


def _cached_model(name: str, arguments: list[str], steps: int, verbose: bool, what: str):
    """``data/artifacts/{name}/final`` and its tokenizer, pretrained first with ``arguments`` (for ``steps`` steps)
    when it is missing or was made with fewer steps (a rehearsal's, or an older quick run's)."""
    from .pretrain import build_parser, run

    run_dir = data_dir() / "artifacts" / name
    final = run_dir / "final"
    found = (final / "model.safetensors").is_file()
    made_with = trained_steps(run_dir) if found else None
    if not found or (made_with is not None and made_with < steps):
        if verbose:
            reason = (f"no model in data/artifacts/{name}" if not found else
                      f"the model in data/artifacts/{name} was trained for {made_with} steps, fewer than {steps}")
            print(f"{reason}: {what} first")
        run(build_parser().parse_args([*arguments, "--steps", str(steps), "--checkpoint-every", "0",
                                       "--output-dir", str(run_dir), "--no-progress", "--overwrite"]))
    elif verbose:
        print(f"pretrained model found: data/artifacts/{name}/final"
              + (f" ({made_with} steps)" if made_with is not None else ""))
    return final, ByteLevelBPETokenizer.from_pretrained(final)


# For the time a notebook announces before it pretrains its own model. A T4: the step's FLOPs, counted as notebook 08
# counts them, over its fp16 peak at this share of it (an assumption for a small model on a T4: short kernels, fixed
# costs per step). A CPU: measured on 2 cores, notebook 05's committed cpu-scale run (2,600 steps in 8.7 minutes) and
# the gpu recipe's step in the fp16 rehearsal (about 7 s).
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
    from .training import flops_per_token, head_flops_per_target

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
    return _cached_model(f"pretrain-{chosen.name}", ["--scale", chosen.name], recipe.steps, verbose, what)


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
    return _cached_model(f"attention-{name}", ["--scale", name, "--layers", str(layers), "--heads", str(heads),
                                                "--dropout", "0.1",  # RoBERTa's, whatever the scale's recipe says
                                                "--lr", str(lr), "--warmup-steps", str(max(steps // 10, 1)),
                                                "--eval-every", str(max(steps // 3, 1))],
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

