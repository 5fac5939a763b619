"""Experiments that need more than a notebook's time budget, with the code the notebooks run.

A notebook runs a short version live; the full version runs from the command line and writes its result as JSON
under ``data/results/`` (committed, a few kB), which the notebook reads and draws beside the live run::

    python -m roberta_from_scratch.experiments static-vs-dynamic --scale cpu

Static against dynamic masking (notebook 05; Liu et al. 2019, §4.1, Table 1): the same model trained on the same
slice of the corpus, repeated for many epochs, once with BERT's 10 precomputed masks per block
(``StaticMaskingDataset``: over 40 epochs each mask is seen 4 times) and once with a fresh mask every time a block
is drawn (``DataCollatorForMLM``), for several seeds; held-out masked-token loss and accuracy on the same fixed
held-out masks.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

RESULTS_DIR = Path(__file__).resolve().parent.parent / "data" / "results"


@dataclass(frozen=True)
class MaskingExperiment:
    """The sizes of one static-against-dynamic comparison."""

    blocks: int = 1024  # the slice of the training blocks that both arms repeat
    epochs: int = 40  # passes over the slice (BERT: 40, with 10 copies, so each static mask is seen 4 times)
    duplicates: int = 10  # static masks per block
    batch_size: int = 64
    lr: float = 3e-3
    evaluations: int = 8  # held-out evaluations per run, evenly spaced
    seeds: tuple[int, ...] = (0, 1, 2)

    @property
    def steps(self) -> int:
        return max(1, self.epochs * self.blocks // self.batch_size)


# Per scale: the live run in the notebook and the full run of the command line (the cached result).
MASKING = {
    "smoke": {"live": MaskingExperiment(blocks=64, epochs=4, batch_size=16, lr=2e-3, evaluations=2, seeds=(0,)),
              "full": MaskingExperiment(blocks=64, epochs=8, batch_size=16, lr=2e-3, evaluations=2, seeds=(0, 1))},
    "cpu": {"live": MaskingExperiment(epochs=20, seeds=(0,)), "full": MaskingExperiment()},
    "gpu": {"live": MaskingExperiment(blocks=4096, seeds=(0,)), "full": MaskingExperiment(blocks=4096)},
}


def masking_arms(blocks, collator, duplicates: int, seed: int) -> dict[str, list]:
    """The two training sets: the blocks themselves (masked afresh by the collator each time they are drawn) and
    ``duplicates`` precomputed masked copies of each block (masks fixed by ``seed``)."""
    from .masking import StaticMaskingDataset

    static = StaticMaskingDataset(blocks, collator, duplicates=duplicates, seed=seed)
    return {"dynamic": list(blocks), "static": [static[i] for i in range(len(static))]}


def run_masking_experiment(config, collator, train_blocks, eval_blocks, settings: MaskingExperiment,
                           device: str = "cpu", progress=None) -> dict:
    """Train one model per (arm, seed); return the settings and each run's held-out evaluations.

    Both arms see the same number of blocks: an epoch of the static arm's 10 copies is 10 epochs of the slice, so
    both run ``settings.steps`` steps of ``settings.batch_size`` blocks. ``progress(arm, seed)`` is called before
    each run."""
    from .model import RobertaForMaskedLM
    from .training import Trainer, TrainingConfig

    slice_blocks = train_blocks[:settings.blocks]
    if len(slice_blocks) < settings.blocks:
        raise ValueError(f"the experiment needs {settings.blocks} training blocks, the corpus gives "
                         f"{len(slice_blocks)}: lower `blocks`")
    runs = {"dynamic": [], "static": []}
    for seed in settings.seeds:
        arms = masking_arms(slice_blocks, collator, settings.duplicates, seed)
        for arm, items in arms.items():
            if progress:
                progress(arm, seed)
            torch.manual_seed(seed)
            trainer = Trainer(RobertaForMaskedLM(config), items, collator,
                              TrainingConfig(max_steps=settings.steps, batch_size=settings.batch_size,
                                             lr=settings.lr, warmup_steps=settings.steps // 10,
                                             eval_every=max(1, settings.steps // settings.evaluations),
                                             seed=seed, progress=False, device=device), eval_blocks)
            history = trainer.train()
            runs[arm].append({"seed": seed, "eval": history.eval})
    return {"settings": {**asdict(settings), "steps": settings.steps}, "runs": runs}


def final_spread(result: dict, arm: str, metric: str) -> tuple[float, float, int]:
    """Mean and standard deviation over seeds of ``metric`` at the last evaluation, and the number of seeds."""
    values = [run["eval"][-1][metric] for run in result["runs"][arm]]
    spread = statistics.stdev(values) if len(values) > 1 else float("nan")
    return statistics.fmean(values), spread, len(values)


def results_path(scale: str) -> Path:
    return RESULTS_DIR / f"static_vs_dynamic-{scale}.json"


def load_result(scale: str) -> dict | None:
    """The cached full result for ``scale``, or None when it has not been computed."""
    path = results_path(scale)
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    if set(result.get("runs", {})) != {"dynamic", "static"}:
        raise ValueError(f"{path} is not a static-against-dynamic result: delete it and run "
                         f"`python -m roberta_from_scratch.experiments static-vs-dynamic --scale {scale}`")
    return result


def course_setting(scale_name: str):
    """The tokenizer, model config, collator and blocks of notebook 05 at this scale."""
    from .config import RobertaConfig
    from .data import load_corpus, pack_dataset
    from .masking import DataCollatorForMLM
    from .settings import SCALES
    from .tokenizer import course_tokenizer

    recipe = SCALES[scale_name].pretrain
    tokenizer = course_tokenizer(recipe.vocab_size)
    corpus = load_corpus()
    train_blocks = list(pack_dataset(corpus["train"], tokenizer, recipe.seq_len)["input_ids"])
    eval_blocks = list(pack_dataset(corpus["validation"], tokenizer, recipe.seq_len)["input_ids"])
    config = RobertaConfig.from_preset(recipe.preset, vocab_size=tokenizer.vocab_size,
                                       max_position_embeddings=recipe.seq_len + 2)
    return tokenizer, config, DataCollatorForMLM(tokenizer), train_blocks, eval_blocks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m roberta_from_scratch.experiments",
                                     description="Run an experiment in full and cache its result for the notebooks.")
    parser.add_argument("experiment", choices=["static-vs-dynamic"])
    parser.add_argument("--scale", choices=list(MASKING), default="cpu",
                        help="the notebook scale whose model, data and full-run sizes to use (default cpu)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", type=Path, help=f"default: {RESULTS_DIR.name}/static_vs_dynamic-SCALE.json")
    args = parser.parse_args(argv)
    settings = MASKING[args.scale]["full"]
    _, config, collator, train_blocks, eval_blocks = course_setting(args.scale)
    print(f"{settings}: {settings.steps} steps per run, {2 * len(settings.seeds)} runs", flush=True)
    result = run_masking_experiment(config, collator, train_blocks, eval_blocks, settings, device=args.device,
                                    progress=lambda arm, seed: print(f"  {arm}, seed {seed}", flush=True))
    result["command"] = f"python -m roberta_from_scratch.experiments static-vs-dynamic --scale {args.scale}"
    result["torch"] = torch.__version__
    output = args.output or results_path(args.scale)
    from .hub import _atomic_write_text

    output.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(output, json.dumps(result, indent=1) + "\n")
    for arm in ("dynamic", "static"):
        for metric in ("loss", "accuracy"):
            mean, spread, n = final_spread(result, arm, metric)
            print(f"{arm:>8} {metric}: {mean:.4f} ± {spread:.4f} over {n} seeds")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
