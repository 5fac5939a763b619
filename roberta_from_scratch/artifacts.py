"""The course's trained artifacts, made once and cached under ``data/artifacts`` for the notebooks after the one
that makes them: the tokenizer of notebook 01, the model notebook 05 pretrains, and the 4-layer model notebook 07
looks at. Each is loaded when it is there and made (trained) when it is not, so that any notebook also runs alone.
"""

from __future__ import annotations

from .data import data_dir, load_corpus
from .settings import SCALES, get_scale
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


def _cached_model(name: str, arguments: list[str], steps: int, verbose: bool, what: str):
    """``data/artifacts/{name}/final`` and its tokenizer, pretrained first with ``arguments`` if it is missing."""
    from .pretrain import build_parser, run

    run_dir = data_dir() / "artifacts" / name
    final = run_dir / "final"
    if not (final / "model.safetensors").is_file():
        if verbose:
            print(f"no model in data/artifacts/{name}: {what} ({steps} steps) first")
        run(build_parser().parse_args([*arguments, "--steps", str(steps), "--checkpoint-every", "0",
                                       "--output-dir", str(run_dir), "--no-progress", "--overwrite"]))
    elif verbose:
        print(f"pretrained model found: data/artifacts/{name}/final")
    return final, ByteLevelBPETokenizer.from_pretrained(final)


def course_pretrained_model(scale: str | None = None, verbose: bool = True):
    """The model notebook 05 pretrained at this scale, with its tokenizer: ``(model_dir, tokenizer)``.

    Read from ``data/artifacts/pretrain-{scale}/final`` when notebook 05 (or the command line with that output
    directory) wrote it; otherwise a quick pretraining with the scale's recipe at a quarter of its steps, so that a
    later notebook also runs alone.
    """
    name = scale or get_scale().name
    return _cached_model(f"pretrain-{name}", ["--scale", name], max(SCALES[name].pretrain.steps // 4, 1), verbose,
                         "a quick pretraining")


# Notebook 07 looks at a model with at least 4 layers x 4 heads. The gpu recipe's model is one (4 x 8); the cpu and
# smoke recipes train 2 x 2, so there a dedicated 4 x 4 model is pretrained once (cpu: a few minutes on 2 cores).
# Four post-LN layers need a gentler start than the recipe's two: a lower peak and a 10% warm-up.
ATTENTION_MODEL = {"smoke": (4, 4, 30, 2e-3), "cpu": (4, 4, 900, 1e-3)}  # layers, heads, steps, peak lr


def course_attention_model(scale: str | None = None, verbose: bool = True):
    """A pretrained model with at least 4 layers x 4 heads for notebook 07, with its tokenizer: at the gpu scale
    notebook 05's model, else a 4 x 4 model with the scale's recipe (vocabulary, blocks, batch, learning rate),
    trained once and cached in ``data/artifacts/attention-{scale}``."""
    name = scale or get_scale().name
    if name not in ATTENTION_MODEL:
        return course_pretrained_model(name, verbose)
    layers, heads, steps, lr = ATTENTION_MODEL[name]
    return _cached_model(f"attention-{name}", ["--scale", name, "--layers", str(layers), "--heads", str(heads),
                                                "--dropout", "0.1",  # RoBERTa's, whatever the scale's recipe says
                                                "--lr", str(lr), "--warmup-steps", str(max(steps // 10, 1)),
                                                "--eval-every", str(max(steps // 3, 1))],
                         steps, verbose, f"pretraining a {layers}-layer, {heads}-head model")
