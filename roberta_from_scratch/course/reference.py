"""The course's reference model: one pretrained encoder that ships with the package, for the notebooks that look at
a trained model (07) or build on one (06, 09, 10) when notebook 05's own run is not there.

It is notebook 05's cpu recipe (the tokenizer, the blocks of 64 tokens, batches of 64, peak rate 3e-3, no dropout)
with 4 layers of 4 heads instead of 2 x 2, trained three times as long. One command makes it, with the course's own
code, and writes it into the package (``roberta_from_scratch/course/reference``)::

    python -m roberta_from_scratch reference

The folder holds the model in transformers' layout (config.json, model.safetensors) with its tokenizer (vocab.json,
merges.txt), and three records of its run:

* ``heldout.safetensors``: the held-out blocks it was evaluated on (the first 256 blocks of the python-docs
  validation split, as its tokenizer packed them), so that its accuracy can be checked on any machine, whatever the
  Python version whose documentation made the corpus;
* ``formation.json``: every head's attention habits (``viz.head_statistics``) at initialisation and at every
  checkpoint of the run, on the first 64 of those blocks, for notebook 07's picture of heads forming;
* ``card.json``: the command, the settings, the size, the held-out loss and accuracy after each evaluation, the
  machine and the time it took.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from ..data import data_dir
from ..files import atomic_write
from ..settings import get_scale
from ..tokenizer import ByteLevelBPETokenizer
from .artifacts import trained_steps

REFERENCE_DIR = Path(__file__).with_name("reference")
CARD_FILE, HELDOUT_FILE, FORMATION_FILE = "card.json", "heldout.safetensors", "formation.json"
MODEL_FILES = ("config.json", "model.safetensors", "vocab.json", "merges.txt")
COMMAND = "python -m roberta_from_scratch reference"
# The run: notebook 05's cpu recipe (scale "cpu") with 4 x 4 heads, 8,000 steps and a warm-up of 5% (as its 130 of
# 2,600); a checkpoint every 250 steps, all kept, for the record of the heads forming.
REFERENCE_RUN = dict(scale="cpu", layers=4, heads=4, steps=8000, warmup_steps=400, eval_every=500,
                     checkpoint_every=250, seed=0)
HELDOUT_BLOCKS = 256  # the Trainer's held-out set (TrainingConfig.eval_blocks)
FORMATION_BLOCKS = 64  # the blocks the habits are measured on, at each checkpoint


def reference_card(directory: Path | str = REFERENCE_DIR) -> dict:
    """The record of the reference model's run (``card.json``)."""
    path = Path(directory) / CARD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {CARD_FILE} in {directory}: the reference model is missing; `{COMMAND}` makes it")
    return json.loads(path.read_text())


def reference_model(verbose: bool = True, directory: Path | str = REFERENCE_DIR):
    """The reference model's folder and its tokenizer: ``(model_dir, tokenizer)``. Prints what it is and its held-out
    masked-token accuracy (from its card)."""
    directory = Path(directory)
    missing = [name for name in (*MODEL_FILES, CARD_FILE, HELDOUT_FILE) if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(f"the reference model in {directory} lacks {', '.join(missing)}: reinstall the "
                                f"package, or make it again with `{COMMAND}`")
    tokenizer = ByteLevelBPETokenizer.from_pretrained(directory)
    if verbose:
        print(describe_reference(reference_card(directory)))
    return directory, tokenizer


def describe_reference(card: dict) -> str:
    """One line: which model, how it was trained, and its held-out accuracy."""
    last = card["eval"][-1]
    at_mask = card.get("heldout", {}).get("accuracy_mask")
    return (f"the course's reference model ({card['layers']} layers x {card['heads']} heads, "
            f"{card['parameters']:,} parameters, {card['steps']:,} pretraining steps, shipped with the package): "
            f"held-out masked-token accuracy {last['accuracy']:.1%}"
            + (f" ({at_mask:.1%} at <mask>)" if at_mask is not None else "")
            + f" on its {card['heldout_blocks']} held-out blocks")


def heldout_blocks(directory: Path | str = REFERENCE_DIR) -> list[list[int]]:
    """The held-out blocks the reference model was evaluated on, as lists of token ids."""
    from safetensors.torch import load_file

    tensors = load_file(str(Path(directory) / HELDOUT_FILE))
    return [row[:n].tolist() for row, n in zip(tensors["input_ids"], tensors["lengths"].tolist())]


def heldout_batches(tokenizer, blocks, batch_size: int = 64) -> list[dict]:
    """``blocks`` masked as every evaluation of the course's runs masks them (15%, the fixed seed), in batches."""
    from ..masking import DataCollatorForMLM
    from ..training import masked_heldout

    return masked_heldout(blocks, DataCollatorForMLM(tokenizer), batch_size)


def heldout_accuracy(model, tokenizer, blocks, device=None) -> dict[str, float]:
    """Held-out masked-token loss, perplexity and accuracy of ``model`` on ``blocks``, with the Trainer's masks."""
    from ..settings import pick_precision
    from ..training import evaluate

    device = device or next(model.parameters()).device
    return evaluate(model, heldout_batches(tokenizer, blocks), device, pick_precision(device), tokenizer.mask_token_id)


def habit_statistics(model, tokenizer, blocks) -> dict[str, torch.Tensor]:
    """Every head's statistics (``viz.head_statistics``) over ``blocks``, as they are (no masks)."""
    from .. import viz

    ids, mask = viz.pad_blocks(blocks, tokenizer.pad_token_id)
    return viz.head_statistics(viz.collect_attentions(model, ids, mask), ids, tokenizer.bos_token_id,
                               tokenizer.eos_token_id, mask)


def formation_record(directory: Path | str = REFERENCE_DIR) -> dict:
    """``formation.json``: ``steps`` (0 first: initialisation), ``uniform_entropy`` and, for each statistic, one
    (layers, heads) tensor per step, stacked: (steps, layers, heads)."""
    record = json.loads((Path(directory) / FORMATION_FILE).read_text())
    record["statistics"] = {name: torch.tensor(values) for name, values in record["statistics"].items()}
    return record


# ----------------------------------------------------------------------------------------------- the model a notebook builds on


def course_pretrained_model(scale: str | None = None, verbose: bool = True):
    """The pretrained encoder a later notebook builds on, with its tokenizer: ``(model_dir, tokenizer)``.

    Notebook 05's model of this scale, from ``data/artifacts/pretrain-{scale}/final``, when notebook 05 (or the
    command line with that output directory) trained it with the scale's whole recipe. Otherwise (none there, or a
    rehearsal's few steps) the course's reference model, which ships with the package
    (:func:`reference_model`): a notebook opened alone starts at once, with a
    model better on held-out text than notebook 05's cpu run. The printout says which.
    """
    chosen = get_scale(scale)  # a rehearsal (RFS_REHEARSAL=1) cuts the recipe's steps here as everywhere
    name, steps = f"pretrain-{chosen.name}", chosen.pretrain.steps
    final = data_dir() / "artifacts" / name / "final"
    found = (final / "model.safetensors").is_file()
    made_with = trained_steps(final.parent) if found else None
    if found and (made_with is None or made_with >= steps):
        if verbose:
            print(f"notebook 05's model: data/artifacts/{name}/final"
                  + (f" ({made_with} steps)" if made_with is not None else ""))
        return final, ByteLevelBPETokenizer.from_pretrained(final)
    if verbose:
        print((f"no model from notebook 05 in data/artifacts/{name}" if not found else
               f"the model in data/artifacts/{name} was trained for {made_with} steps, fewer than the {chosen.name} "
               f"recipe's {steps}") + ": using the reference model instead")
    return reference_model(verbose)


def run_record(model_dir) -> list[dict]:
    """The held-out evaluations of the run that made ``model_dir`` (a run's ``final`` folder): from the run's
    ``history.json`` when it was written after the model (the command line writes it last; an older one is an
    older run's), else from the newest checkpoint when its weights are the model's, byte for byte (notebook 05's
    run); empty when neither says."""
    import filecmp

    from ..checkpoints import latest_checkpoint, read_checkpoint

    weights, log = Path(model_dir) / "model.safetensors", Path(model_dir).parent / "history.json"
    try:
        if log.is_file() and log.stat().st_mtime >= weights.stat().st_mtime:
            return list(json.loads(log.read_text()).get("eval") or [])
        checkpoint = latest_checkpoint(Path(model_dir).parent / "checkpoints")
        if checkpoint is not None and filecmp.cmp(checkpoint / "model.safetensors", weights, shallow=False):
            _, _, state = read_checkpoint(checkpoint)  # validated: a damaged file is a ValueError
            return list(json.loads(state["history"]).get("eval") or [])
    except (OSError, ValueError, AttributeError, TypeError):  # a damaged record says nothing
        pass
    return []


def describe_pretrained(model_dir) -> str:
    """One line for a notebook that builds on ``model_dir`` (from ``course_pretrained_model``): which model, and its
    held-out masked-token accuracy (the reference model's from its card; notebook 05's from its run's record)."""
    if Path(model_dir).resolve() == REFERENCE_DIR.resolve():
        return "the encoder below: " + describe_reference(reference_card())
    held_out = run_record(model_dir)
    line = "the encoder below: notebook 05's model"
    if held_out and isinstance(held_out[-1], dict) and "accuracy" in held_out[-1]:
        at_mask = held_out[-1].get("accuracy_mask")
        return line + (f"; held-out masked-token accuracy {held_out[-1]['accuracy']:.1%}"
                       + (f" ({at_mask:.1%} at <mask>)" if isinstance(at_mask, float) else "")
                       + f" after {held_out[-1]['step']} steps")
    return line + "; its held-out masked-token accuracy is printed by notebook 05"


# ----------------------------------------------------------------------------------------------- making it


def _same_run(run_dir: Path, settings: dict) -> bool:
    """Whether ``run_dir`` holds a finished run of ``settings`` with all its checkpoints (then it is reused)."""
    from ..checkpoints import read_checkpoint, step_folders

    if trained_steps(run_dir) != settings["steps"] or not (run_dir / "final" / "model.safetensors").is_file():
        return False
    folders = step_folders(run_dir / "checkpoints")
    wanted = settings["steps"] // settings["checkpoint_every"]
    if len(folders) != wanted:
        return False
    try:
        config, _, state = read_checkpoint(folders[-1])  # the last checkpoint is the final model's step
        saved = json.loads(state["training_config"])
    except (ValueError, TypeError):  # a damaged run is not reused: it is trained again
        return False
    return (config["num_hidden_layers"], config["num_attention_heads"]) == (settings["layers"], settings["heads"]) \
        and saved.get("seed") == settings["seed"] and saved.get("warmup_steps") == settings["warmup_steps"]


def build_reference(output_dir: Path | str = REFERENCE_DIR, run_dir: Path | str | None = None,
                    settings: dict | None = None, verbose: bool = True) -> dict:
    """Pretrain the reference model as ``settings`` say (default REFERENCE_RUN) in ``run_dir`` (default
    ``data/artifacts/reference-run``; a finished run of the same settings there is reused), measure its heads at
    every checkpoint, and write the model and its records into ``output_dir``. Returns the card."""
    from safetensors.torch import save_file

    from ..model import RobertaForMaskedLM
    from ..packing import pack_dataset
    from ..data import load_corpus
    from .artifacts import PretrainRun, course_tokenizer, pretrain
    from ..checkpoints import step_folders

    settings = dict(REFERENCE_RUN if settings is None else settings)
    run_dir = Path(run_dir) if run_dir is not None else data_dir() / "artifacts" / "reference-run"
    say = print if verbose else (lambda *a, **k: None)
    started = time.time()
    reused = _same_run(run_dir, settings)
    if reused:
        say(f"reusing the finished run in {run_dir}")
        # the run's time from its files: the first checkpoint to the final model, scaled to all the steps
        first = step_folders(run_dir / "checkpoints")[0]
        span = (run_dir / "final" / "model.safetensors").stat().st_mtime - first.stat().st_mtime
        seconds = span * settings["steps"] / (settings["steps"] - settings["checkpoint_every"])
    else:
        pretrain(PretrainRun(**settings, output_dir=str(run_dir), keep_checkpoints=10**6, no_progress=not verbose,
                             overwrite=True))
        seconds = time.time() - started
    final = run_dir / "final"
    history = json.loads((run_dir / "history.json").read_text())

    recipe = get_scale(settings["scale"]).pretrain
    tokenizer = course_tokenizer(recipe.vocab_size, verbose=False)
    corpus = load_corpus("python-docs", verbose=False)
    validation = pack_dataset(corpus["validation"], tokenizer, recipe.seq_len)["input_ids"]
    blocks = [list(validation[i]) for i in range(min(HELDOUT_BLOCKS, len(validation)))]
    model = RobertaForMaskedLM.from_pretrained(final).eval()
    result = heldout_accuracy(model, tokenizer, blocks)
    recorded = history["eval"][-1]
    if abs(result["loss"] - recorded["loss"]) > 1e-4:  # the blocks and masks must be the run's own
        raise RuntimeError(f"the held-out loss measured again ({result['loss']:.5f}) is not the run's "
                           f"({recorded['loss']:.5f}): the held-out blocks differ from the run's")

    # the habits at initialisation (the run's first weights: the same seed, checked by the held-out loss of step 0)
    torch.manual_seed(settings["seed"])
    initial = RobertaForMaskedLM(model.config).eval()
    if abs(heldout_accuracy(initial, tokenizer, blocks)["loss"] - history["eval"][0]["loss"]) > 1e-4:
        raise RuntimeError("the rebuilt initial model is not the run's: its held-out loss at step 0 differs")
    measured = blocks[:FORMATION_BLOCKS]
    steps, per_step = [0], [habit_statistics(initial, tokenizer, measured)]
    for folder in step_folders(run_dir / "checkpoints"):
        steps.append(int(folder.name.split("-")[1]))
        per_step.append(habit_statistics(RobertaForMaskedLM.from_pretrained(folder).eval(), tokenizer, measured))
    if steps[-1] != settings["steps"]:  # the final model is the last checkpoint's
        steps.append(settings["steps"])
        per_step.append(habit_statistics(model, tokenizer, measured))
    from .. import viz

    _, mask = viz.pad_blocks(measured, tokenizer.pad_token_id)
    formation = {"steps": steps, "blocks": len(measured), "uniform_entropy": viz.uniform_entropy(mask),
                 "statistics": {name: torch.stack([s[name] for s in per_step]).tolist() for name in per_step[0]}}

    output_dir = Path(output_dir)
    for name in MODEL_FILES:  # each file written whole or not at all, with the mode new files get (the umask's)
        atomic_write(output_dir / name, (final / name).read_bytes())
    lengths = torch.tensor([len(b) for b in blocks])
    padded = torch.full((len(blocks), int(lengths.max())), tokenizer.pad_token_id, dtype=torch.int32)
    for i, block in enumerate(blocks):
        padded[i, :len(block)] = torch.tensor(block, dtype=torch.int32)
    atomic_write(output_dir / HELDOUT_FILE,
                 lambda tmp: save_file({"input_ids": padded, "lengths": lengths.to(torch.int32)}, str(tmp)))
    atomic_write(output_dir / FORMATION_FILE, json.dumps(formation))
    options = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in settings.items())
    card = {
        "command": COMMAND, "equivalent_pretrain_command":
            f"python -m roberta_from_scratch pretrain {options} --keep-checkpoints 1000000 --output-dir {run_dir.name}",
        **settings, "parameters": model.num_parameters(), "vocab_size": model.config.vocab_size,
        "hidden_size": model.config.hidden_size, "seq_len": recipe.seq_len, "batch_size": recipe.batch_size,
        "lr": recipe.lr, "dropout": recipe.dropout, "heldout_blocks": len(blocks),
        "heldout": {k: round(v, 6) for k, v in result.items()},
        "eval": [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in e.items()} for e in history["eval"]],
        "train_minutes": round(seconds / 60, 1), "train_minutes_from": "file times" if reused else "a clock",
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
                   f"python {platform.python_version()}",
        "corpus": f"python-docs of python {platform.python_version()}: {len(corpus['train'])} train and "
                  f"{len(corpus['validation'])} validation documents",
        "bytes": {name: (output_dir / name).stat().st_size for name in (*MODEL_FILES, HELDOUT_FILE, FORMATION_FILE)},
    }
    atomic_write(output_dir / CARD_FILE, json.dumps(card, indent=1) + "\n")
    say(describe_reference(card))
    say(f"written to {output_dir}: {sum(card['bytes'].values()) / 1e6:.1f} MB")
    return card


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"{COMMAND}", description="Pretrain the course's reference model (about "
                                     "26 minutes on 2 CPU cores) and write it with its records into the package.")
    parser.add_argument("--output-dir", default=str(REFERENCE_DIR), help="where to write it (default: the package's "
                        "roberta_from_scratch/course/reference)")
    parser.add_argument("--run-dir", help="where the run and its checkpoints go (default: data/artifacts/"
                        "reference-run; a finished run of the same settings there is reused)")
    args = parser.parse_args(argv)
    build_reference(args.output_dir, args.run_dir)


if __name__ == "__main__":
    main()
