"""Experiments that need more than a notebook's time budget, with the code the notebooks run.

A notebook runs a short version live; the full version runs from the command line and writes its result as JSON
under ``roberta_from_scratch/course/results/`` (committed, a few kB, installed with the package), which the notebook reads and draws beside the live run::

    python -m roberta_from_scratch experiments static-vs-dynamic --scale cpu

Static against dynamic masking (notebook 05; Liu et al. 2019, §4.1, Table 1): the same model trained on the same
slice of the corpus, repeated for many epochs, once with BERT's 10 precomputed masks per block
(``StaticMaskingDataset``: over 40 epochs each mask is seen 4 times) and once with a fresh mask every time a block
is drawn (``DataCollatorForMLM``), for several seeds; held-out masked-token loss and accuracy on the same fixed
held-out masks.

Does pretraining pay (notebook 06): four ways to train a topic classifier on notebook 05's encoder (full
finetuning of the pretrained weights, the same network from random weights, a probe (the head alone) on the
frozen encoder,
the top layer and the head), each with its own learning-rate sweep of three values chosen on validation, several
seeds, test accuracy at the chosen rate; then a label-efficiency curve (5% to 100% of the training labels) for the
pretrained and random encoders and a bag-of-words logistic regression::

    python -m roberta_from_scratch experiments finetuning --scale cpu

Beyond RoBERTa (notebook 11): an ablation ladder at equal wall-clock. RoBERTa's recipe (post-LN, biases, a GELU
feed-forward layer, a learned position table, dropout 0.1, 15% masking), then each later change alone (pre-LN,
no biases, GeGLU, RoPE, dropout off; masking at 20, 30 and 40%), then the combination of those that helped;
several seeds, held-out loss and accuracy on the same 15% masks, tokens/s; the topic classifier of notebook 06
finetuned from the baseline and the combination::

    python -m roberta_from_scratch experiments beyond-roberta --scale cpu

Every experiment's sizes that scale with the budget come from the scale (``settings.SCALES``): the gpu scale's
learning rates, batches and steps are its recipe's, not the cpu scale's. :func:`live_settings` gives a notebook's
live run, cut to a few steps in a rehearsal (``RFS_REHEARSAL=1``). :func:`cached_results` gives a notebook the
cached multi-seed result of its scale, or, where a scale has none (the gpu scale: no GPU computed them), the cpu
scale's, labelled with the scale and device that produced it.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..config import IGNORE_INDEX
from ..settings import SCALES, Scale

RESULTS_DIR = Path(__file__).resolve().parent / "results"  # package data: a pip install (Colab) has them too
FALLBACK_SCALE = "cpu"  # whose cached results stand in for a scale that has none (the gpu scale), labelled as such


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


def _masking(scale: str, **sizes) -> MaskingExperiment:
    """A comparison at ``scale``: the recipe's model (notebook 05's), trained with the recipe's batch and peak
    learning rate."""
    recipe = SCALES[scale].pretrain
    return MaskingExperiment(batch_size=recipe.batch_size, lr=recipe.lr, **sizes)


# Per scale: the live run in the notebook and the full run of the command line (the cached result). The full runs
# follow BERT (10 static masks per block, each seen 4 times) on a slice of 1,024 blocks (the gpu scale's corpus
# packs into 2,946 blocks of 128 tokens). A live run has minutes, too few steps to see a mask 4 times out of 10: it
# exaggerates the static arm instead (2 masks per block, each seen 8 times) on a smaller slice, so that memorising
# can show in 64 steps per arm (cpu: 4 runs, 256 of notebook 05's 2,600 steps; gpu: 2 runs of 64 steps).
MASKING = {
    "smoke": {"live": _masking("smoke", blocks=64, epochs=4, duplicates=2, evaluations=2, seeds=(0,)),
              "full": _masking("smoke", blocks=64, epochs=8, evaluations=2, seeds=(0, 1))},
    "cpu": {"live": _masking("cpu", blocks=256, epochs=16, duplicates=2, evaluations=4, seeds=(0, 1)),
            "full": _masking("cpu")},
    "gpu": {"live": _masking("gpu", blocks=512, epochs=16, duplicates=2, evaluations=4, seeds=(0,)),
            "full": _masking("gpu")},
}


def masking_arms(blocks, collator, duplicates: int, seed: int) -> dict[str, list]:
    """The two training sets: the blocks themselves (masked afresh by the collator each time they are drawn) and
    ``duplicates`` precomputed masked copies of each block (masks fixed by ``seed``)."""
    from ..masking import StaticMaskingDataset

    static = StaticMaskingDataset(blocks, collator, duplicates=duplicates, seed=seed)
    return {"dynamic": list(blocks), "static": [static[i] for i in range(len(static))]}


def run_masking_experiment(config, collator, train_blocks, eval_blocks, settings: MaskingExperiment,
                           device: str = "cpu", progress=None) -> dict:
    """Train one model per (arm, seed); return the settings and each run's held-out evaluations.

    Both arms see the same number of blocks: an epoch of the static arm's 10 copies is 10 epochs of the slice, so
    both run ``settings.steps`` steps of ``settings.batch_size`` blocks. ``progress(arm, seed)`` is called before
    each run."""
    from ..model import RobertaForMaskedLM
    from ..training import Trainer, TrainingConfig, target_outcomes

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
            outcomes = target_outcomes(trainer.model, trainer.eval_batches, trainer.device, trainer.precision,
                                       collator.mask_token_id)
            runs[arm].append({"seed": seed, "eval": history.eval,  # and the final model's score on every target:
                              "correct": outcomes["correct"].int().tolist(),
                              "target_loss": [round(x, 4) for x in outcomes["loss"].tolist()]})
    kinds = outcomes["kind"].tolist()  # the same held-out masks for every run
    return {"settings": {**asdict(settings), "steps": settings.steps}, "runs": runs, "kinds": kinds}


MASKING_METRICS = ("accuracy_mask", "loss_mask", "loss")


def masking_scores(result: dict, arm: str, metric: str) -> list[list[float]]:
    """The final models' per-target scores of ``arm``, one row per seed: ``metric`` "accuracy_mask" (right or wrong
    at the ``<mask>`` positions), "loss_mask" (the loss there, nats) or "loss" (the loss at every labelled target,
    ``<mask>``, random and kept: the held-out loss of the evaluations)."""
    from ..training import KINDS

    if metric not in MASKING_METRICS:
        raise ValueError(f"metric={metric!r}: choose one of {', '.join(MASKING_METRICS)}")
    field = "correct" if metric == "accuracy_mask" else "target_loss"
    keep = [metric == "loss" or k == KINDS.index("mask") for k in result["kinds"]]
    return [[x for x, kept in zip(run[field], keep) if kept] for run in result["runs"][arm]]


def masking_difference(result: dict, metric: str):
    """Dynamic minus static at the end of the runs (``masking_scores``' ``metric``), with the course's paired
    bootstrap (``stats``) over seeds and held-out targets."""
    from ..stats import paired_bootstrap

    return paired_bootstrap(masking_scores(result, "dynamic", metric), masking_scores(result, "static", metric))


def final_spread(result: dict, arm: str, metric: str) -> tuple[float, float, int]:
    """Mean and standard deviation over seeds of ``metric`` at the last evaluation, and the number of seeds."""
    return _mean_sd([run["eval"][-1][metric] for run in result["runs"][arm]])


def _mean_sd(values: list[float]) -> tuple[float, float, int]:
    """Mean, standard deviation (nan for one value) and count."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else float("nan")), len(values)


def results_path(scale: str) -> Path:
    return RESULTS_DIR / f"static_vs_dynamic-{scale}.json"


def _load_cached(path: Path, is_valid, experiment: str, scale: str) -> dict | None:
    """A cached result, or None when it has not been computed; a file of another kind is refused with the fix."""
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    if not is_valid(result):
        raise ValueError(f"{path} is not a {experiment} result of this version of the course (an older one, or "
                         f"another file): delete it and run "
                         f"`python -m roberta_from_scratch experiments {experiment} --scale {scale}`")
    return result


def load_result(scale: str) -> dict | None:
    """The cached full static-against-dynamic result for ``scale``, or None when it has not been computed."""
    return _load_cached(results_path(scale), lambda r: set(r.get("runs", {})) == {"dynamic", "static"} and "kinds" in r,
                        "static-vs-dynamic", scale)


# ----------------------------------------------------------------------------------------------- finetuning

FINETUNE_ARMS = ("pretrained", "random", "probe", "probe, mean", "top layer")
CURVE_ARMS = ("pretrained", "random", "bag of words")


# The grids of the arms that do not depend on the encoder's scale. A first sweep (3 rates each) kept the largest rate
# of the probe, the top layer and the bag of words; each grid was extended upwards until its best rate sat inside.
PROBE_LRS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
BOW_LRS = (0.01, 0.05, 0.2, 1.0, 5.0)


@dataclass(frozen=True)
class FinetuneExperiment:
    """The sizes of notebook 06's comparison: learning rates per arm, seeds, and the label fractions."""

    lrs: tuple[tuple[str, tuple[float, ...]], ...] = (
        ("pretrained", (3e-4, 1e-3, 3e-3)), ("random", (3e-4, 1e-3, 3e-3)),
        ("probe", PROBE_LRS), ("probe, mean", PROBE_LRS), ("top layer", (3e-4, 1e-3, 3e-3, 1e-2)),
        ("bag of words", BOW_LRS))
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    epochs: int = 10
    batch_size: int = 32
    fractions: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0)
    min_steps: int = 150  # a small label set still gets this many optimizer steps (more epochs over it)
    bow_steps: int = 200  # full-batch steps of the logistic regression

    def arm_lrs(self, arm: str) -> tuple[float, ...]:
        return dict(self.lrs)[arm]


def rates_around(lr: float) -> tuple[float, float, float]:
    """A third of ``lr``, ``lr`` and three times it, to one significant figure (1e-3: 3e-4, 1e-3, 3e-3)."""
    return tuple(float(f"{x:.1g}") for x in (0.3 * lr, lr, 3 * lr))


def _scale_lrs(scale: str) -> tuple[tuple[str, tuple[float, ...]], ...]:
    """The sweep's grids at ``scale``: the encoder's arms around the scale's ``finetune_lr`` (its middle rate), the
    probe (a head on frozen features) and the bag of words on their own grids, which do not depend on the encoder."""
    around = rates_around(SCALES[scale].finetune_lr)
    return (("pretrained", around), ("random", around), ("probe", PROBE_LRS), ("probe, mean", PROBE_LRS),
            ("top layer", (*around, float(f"{10 * around[1]:.1g}"))), ("bag of words", BOW_LRS))


_GPU = SCALES["gpu"]
FINETUNING = {
    "smoke": {"live": FinetuneExperiment(epochs=1, seeds=(0,), fractions=(0.25, 1.0), min_steps=8),
              "full": FinetuneExperiment(epochs=2, seeds=(0, 1), fractions=(0.25, 1.0), min_steps=8,
                                         lrs=(("pretrained", (3e-4, 3e-3)), ("random", (3e-4, 3e-3)),
                                              ("probe", (1e-3, 1e-2)), ("probe, mean", (1e-3, 1e-2)),
                                              ("top layer", (3e-4, 3e-3)), ("bag of words", (0.05, 0.2))))},
    "cpu": {"live": FinetuneExperiment(seeds=(0,), fractions=(0.05, 0.25, 1.0)), "full": FinetuneExperiment()},
    # the gpu scale's grids centred on its finetune_lr (1e-4 for the small preset), its epochs from the scale
    "gpu": {"live": FinetuneExperiment(lrs=_scale_lrs("gpu"), epochs=_GPU.finetune_epochs, seeds=(0,),
                                       fractions=(0.05, 0.25, 1.0)),
            "full": FinetuneExperiment(lrs=_scale_lrs("gpu"), epochs=_GPU.finetune_epochs)},
}


def label_subset(examples: list[dict], fraction: float, seed: int) -> list[dict]:
    """A class-stratified random ``fraction`` of ``examples`` (at least one per class), in their original order:
    every class keeps its share, so a 5% set still holds all the topics."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return list(examples)
    generator = torch.Generator().manual_seed(seed)
    by_class: dict[int, list[int]] = {}
    for i, e in enumerate(examples):
        by_class.setdefault(e["label"], []).append(i)
    kept = []
    for label in sorted(by_class):
        indices = by_class[label]
        take = max(1, round(fraction * len(indices)))
        kept += [indices[j] for j in torch.randperm(len(indices), generator=generator)[:take].tolist()]
    return [examples[i] for i in sorted(kept)]


def bag_of_words(examples: list[dict], vocab_size: int) -> torch.Tensor:
    """log(1 + counts) of each token id, one row per example (notebook 06's baseline features)."""
    counts = torch.zeros(len(examples), vocab_size)
    for i, e in enumerate(examples):
        ids = torch.as_tensor(e["input_ids"])
        counts[i].index_add_(0, ids, torch.ones(len(ids)))
    return torch.log1p(counts)


def train_bag_of_words(features: torch.Tensor, labels: torch.Tensor, num_labels: int, lr: float, steps: int = 200,
                       weight_decay: float = 0.01, seed: int = 0) -> torch.nn.Linear:
    """Multinomial logistic regression on ``features``: ``steps`` full-batch AdamW steps from a seeded start."""
    torch.manual_seed(seed)
    logistic = torch.nn.Linear(features.size(1), num_labels)
    optimizer = torch.optim.AdamW(logistic.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(logistic(features), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return logistic


def finetune_arm(arm: str, pretrained_dir, num_labels: int, train: list[dict], validation: list[dict], lr: float,
                 seed: int, settings: FinetuneExperiment, pad_token_id: int, device: str = "cpu"):
    """Train one classifier of ``arm`` (see FINETUNE_ARMS) with the GLUE-shaped recipe at ``lr``; return the model
    and its history. At least ``settings.epochs`` epochs and ``settings.min_steps`` optimizer steps."""
    from ..finetuning import FinetuneConfig, finetune, freeze, task_model
    from ..model import MeanPooledSequenceClassification, RobertaForSequenceClassification

    if arm not in FINETUNE_ARMS:
        raise ValueError(f"unknown arm {arm!r}: choose one of {', '.join(FINETUNE_ARMS)}")
    cls = MeanPooledSequenceClassification if arm == "probe, mean" else RobertaForSequenceClassification
    model = task_model(cls, pretrained_dir, seed, random_init=arm == "random", num_labels=num_labels)
    freeze(model, {"probe": 0, "probe, mean": 0, "top layer": 1}.get(arm))
    steps_per_epoch = max(1, len(train) // settings.batch_size)
    epochs = max(settings.epochs, math.ceil(settings.min_steps / steps_per_epoch))
    cfg = FinetuneConfig(epochs=epochs, batch_size=min(settings.batch_size, len(train)), lr=lr, weight_decay=0.1,
                         warmup_ratio=0.06, seed=seed, device=device, progress=False)
    history = finetune(model, train, validation, cfg, pad_token_id)
    return model, history


def _accuracy(labels: torch.Tensor, logits: torch.Tensor, num_labels: int) -> dict[str, float]:
    """Accuracy and macro-F1, and which examples were right (1) or wrong (0), in order: the per-item scores of the
    course's paired bootstrap."""
    from ..finetuning import classification_metrics

    predictions = logits.argmax(-1)
    metrics = classification_metrics(labels, predictions, num_labels)
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
            "correct": (predictions == labels).int().tolist()}


def run_finetuning_experiment(pretrained_dir, tokenizer, train: list[dict], validation: list[dict],
                              test: list[dict], num_labels: int, settings: FinetuneExperiment, device: str = "cpu",
                              progress=None) -> dict:
    """The sweep (every arm, learning rate and seed: validation and test scores at the end of training), the rate
    each arm keeps (best mean validation accuracy over the seeds), and the label-efficiency curve at those rates."""
    from ..finetuning import predict

    pad = tokenizer.pad_token_id
    y_val = torch.tensor([e["label"] for e in validation])
    y_test = torch.tensor([e["label"] for e in test])

    def scores(model, examples_labels):
        return {split: _accuracy(labels, predict(model, examples, pad), num_labels)
                for split, (examples, labels) in examples_labels.items()}

    def bow_run(subset, lr, seed):
        features = bag_of_words(subset, tokenizer.vocab_size)
        labels = torch.tensor([e["label"] for e in subset])
        logistic = train_bag_of_words(features, labels, num_labels, lr, settings.bow_steps, seed=seed)
        with torch.no_grad():
            return {"validation": _accuracy(y_val, logistic(bag_of_words(validation, tokenizer.vocab_size)),
                                            num_labels),
                    "test": _accuracy(y_test, logistic(bag_of_words(test, tokenizer.vocab_size)), num_labels)}

    def one_run(arm, subset, lr, seed):
        if progress:
            progress(arm, lr, seed, len(subset))
        if arm == "bag of words":
            return {"seed": seed, "train_examples": len(subset), **bow_run(subset, lr, seed)}
        model, history = finetune_arm(arm, pretrained_dir, num_labels, subset, validation, lr, seed, settings, pad,
                                      device)
        return {"seed": seed, "train_examples": len(subset), "steps": history.train[-1]["step"],
                **scores(model, {"validation": (validation, y_val), "test": (test, y_test)})}

    sweep, chosen = {}, {}
    for arm, lrs in settings.lrs:
        sweep[arm] = {repr(lr): [one_run(arm, train, lr, seed) for seed in settings.seeds] for lr in lrs}
        chosen[arm] = max(lrs, key=lambda lr: statistics.fmean(r["validation"]["accuracy"]
                                                               for r in sweep[arm][repr(lr)]))
    curve = {}
    for arm in CURVE_ARMS:
        curve[arm] = {}
        for fraction in settings.fractions:
            if fraction == 1:
                curve[arm][repr(fraction)] = sweep[arm][repr(chosen[arm])]
                continue
            curve[arm][repr(fraction)] = [one_run(arm, label_subset(train, fraction, seed), chosen[arm], seed)
                                          for seed in settings.seeds]
    return {"settings": settings_dict(settings), "sweep": sweep, "chosen": chosen, "label_efficiency": curve}


# ----------------------------------------------------------------------------------------------- beyond RoBERTa

# The changes of notebook 11, each as the RobertaConfig fields it sets on top of RoBERTa's recipe (the baseline).
CHANGES: dict[str, dict] = {
    "pre-LN": {"norm_position": "pre"},
    "no biases": {"bias": False},
    "GeGLU": {"feed_forward": "glu"},  # at the plain layer's parameter count (arm_config sets the width)
    "RoPE": {"position_embedding_type": "rotary"},
    "dropout off": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
}
EVAL_MASK_RATE = 0.15  # every arm is evaluated on the same held-out blocks masked at this rate
BASELINE, COMBINATION = "RoBERTa", "best combination"


@dataclass(frozen=True)
class AblationExperiment:
    """The sizes of notebook 11's ablation ladder. Every arm gets the same wall-clock budget: the time the baseline
    takes for ``baseline_steps`` steps, turned into steps per arm by the arms' throughputs, measured side by side
    (``timing_rounds`` interleaved rounds of ``timing_steps`` steps each; the median round counts)."""

    baseline_steps: int = 400
    batch_size: int = 64
    lr: float = 3e-3
    warmup: float = 0.05  # share of each run's steps; then linear decay to 0 at the end of the budget
    seeds: tuple[int, ...] = (0, 1, 2)
    mask_rates: tuple[float, ...] = (0.2, 0.3, 0.4)  # besides 15%, on the baseline
    changes: tuple[str, ...] = tuple(CHANGES)
    timing_rounds: int = 3
    timing_steps: int = 8
    evaluations: int = 4  # held-out evaluations per run, evenly spaced
    finetune_seeds: tuple[int, ...] = (0, 1, 2)  # downstream check of the baseline and the combination; () skips it


ABLATION = {
    "smoke": {"live": AblationExperiment(baseline_steps=6, batch_size=16, seeds=(0,), mask_rates=(0.4,),
                                         changes=("pre-LN", "RoPE"), timing_rounds=3, timing_steps=2, evaluations=1,
                                         finetune_seeds=()),
              "full": AblationExperiment(baseline_steps=10, batch_size=16, seeds=(0, 1), mask_rates=(0.4,),
                                         timing_rounds=2, timing_steps=2, evaluations=2, finetune_seeds=(0,))},
    "cpu": {"live": AblationExperiment(baseline_steps=150, seeds=(0,), mask_rates=(0.3,), timing_steps=4,
                                       evaluations=3, finetune_seeds=()),
            "full": AblationExperiment(baseline_steps=300)},
    # the gpu scale's ladder: its recipe's batch and peak learning rate; the live budget the same share of the main
    # pretraining as the cpu's (150 of 2,600 steps per arm), the full one half of it
    "gpu": {"live": AblationExperiment(baseline_steps=round(_GPU.pretrain.steps * 150 / 2600),
                                       batch_size=_GPU.pretrain.batch_size, lr=_GPU.pretrain.lr, seeds=(0,),
                                       mask_rates=(0.3,), timing_steps=4, evaluations=3, finetune_seeds=()),
            "full": AblationExperiment(baseline_steps=_GPU.pretrain.steps // 2, batch_size=_GPU.pretrain.batch_size,
                                       lr=_GPU.pretrain.lr)},
}


def ablation_baseline(scale_name: str):
    """The baseline of the ladder: notebook 05's model at this scale, with RoBERTa's dropout of 0.1 (the cpu recipe
    of notebook 05 trains without it; here that is one of the changes)."""
    from dataclasses import replace


    recipe = SCALES[scale_name].pretrain  # (the config alone: no need to pack the corpus for it)
    return replace(recipe.model_config(recipe.vocab_size), hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def arm_config(baseline, changes):
    """``baseline`` (a RobertaConfig) with the named CHANGES; a gated feed-forward layer gets the width that keeps
    the plain layer's parameter count."""
    from dataclasses import replace

    from ..config import glu_intermediate_size

    unknown = [c for c in changes if c not in CHANGES]
    if unknown:
        raise ValueError(f"unknown change {unknown[0]!r}: choose from {', '.join(CHANGES)}")
    fields = {k: v for change in changes for k, v in CHANGES[change].items()}
    if fields.get("feed_forward") == "glu" and baseline.feed_forward != "glu":
        fields["intermediate_size"] = glu_intermediate_size(baseline.intermediate_size)
    return replace(baseline, **fields)


def ablation_arms(settings: AblationExperiment) -> dict[str, tuple[tuple[str, ...], float]]:
    """Arm name -> (changes, training masking rate): the baseline, each change alone, each masking rate alone."""
    arms = {BASELINE: ((), EVAL_MASK_RATE)}
    arms.update({change: ((change,), EVAL_MASK_RATE) for change in settings.changes})
    arms.update({f"masking {rate:.0%}": ((), rate) for rate in settings.mask_rates})
    return arms


def _arm_trainer(baseline, arm, tokenizer, train_blocks, eval_blocks, steps, settings, seed, device):
    from ..masking import DataCollatorForMLM
    from ..model import RobertaForMaskedLM
    from ..training import Trainer, TrainingConfig

    changes, rate = arm
    torch.manual_seed(seed)
    model = RobertaForMaskedLM(arm_config(baseline, changes))
    cfg = TrainingConfig(max_steps=steps, batch_size=settings.batch_size, lr=settings.lr,
                         warmup_steps=round(settings.warmup * steps), eval_every=max(1, steps // settings.evaluations),
                         seed=seed, progress=False, device=device,
                         compile=False)  # eager everywhere: a compile per arm would cost a T4 minutes per arm
    return Trainer(model, train_blocks, DataCollatorForMLM(tokenizer, mlm_probability=rate), cfg, eval_blocks,
                   eval_collator=DataCollatorForMLM(tokenizer, mlm_probability=EVAL_MASK_RATE))


def measure_throughput(baseline, arms: dict, tokenizer, train_blocks, settings: AblationExperiment,
                       device: str = "cpu") -> dict[str, float]:
    """Training tokens per second of every arm, measured side by side: one step each to warm up, then
    ``timing_rounds`` rounds in which every arm runs ``timing_steps`` steps in turn (so a machine that slows down
    slows all arms alike); the median round of each arm."""
    import time

    trainers = {name: _arm_trainer(baseline, arm, tokenizer, train_blocks, None, 10 ** 6, settings, 0, device)
                for name, arm in arms.items()}
    for trainer in trainers.values():
        trainer.train_step()
    rates = {name: [] for name in arms}
    for _ in range(settings.timing_rounds):
        for name, trainer in trainers.items():
            tokens, start = 0, time.perf_counter()
            for _ in range(settings.timing_steps):
                trainer.train_step()  # returns a float: the step has finished on the device
                tokens += trainer.last_tokens
            rates[name].append(tokens / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}


BUDGET_RATIO = (0.5, 2.0)  # no change here makes a step more than twice as fast or as slow


def budget_steps(throughput: dict[str, float], baseline_steps: int) -> dict[str, int]:
    """Steps per arm in the wall-clock time that the baseline takes for ``baseline_steps`` steps. A speed ratio
    outside BUDGET_RATIO is a glitch of the measurement (another program took the cores while one arm was timed),
    and is held at the nearer bound, so that one bad timing cannot give an arm four times the budget."""
    low, high = BUDGET_RATIO
    return {name: max(1, round(baseline_steps * min(high, max(low, rate / throughput[BASELINE]))))
            for name, rate in throughput.items()}


def final_losses(runs: list[dict], metric: str = "loss") -> list[float]:
    return [run["eval"][-1][metric] for run in runs]


def choose_combination(runs: dict[str, list[dict]], settings: AblationExperiment) -> tuple[tuple[str, ...], float]:
    """The changes whose arm ended with a lower mean held-out loss than the baseline, and the masking rate (15%
    included) with the lowest: the combination the ladder suggests."""
    base = statistics.fmean(final_losses(runs[BASELINE]))
    helped = tuple(c for c in settings.changes if statistics.fmean(final_losses(runs[c])) < base)
    losses = {EVAL_MASK_RATE: base, **{r: statistics.fmean(final_losses(runs[f"masking {r:.0%}"]))
                                       for r in settings.mask_rates}}
    return helped, min(losses, key=losses.get)


def run_ablation(baseline, tokenizer, train_blocks, eval_blocks, settings: AblationExperiment, device: str = "cpu",
                 downstream=None, progress=None) -> dict:
    """The ladder: throughputs side by side, every arm for every seed at the same wall-clock budget (held-out loss
    and accuracy on the same 15% masks), then the combination the single arms suggest, timed against the baseline
    and trained the same way. ``downstream(pretrained_dir, seed) -> dict`` (a finetuning run), when given, scores
    the baseline and the combination models of the seeds in ``settings.finetune_seeds``. ``progress(text)`` is
    called before each run."""
    import tempfile

    arms = ablation_arms(settings)
    throughput = measure_throughput(baseline, arms, tokenizer, train_blocks, settings, device)
    steps = budget_steps(throughput, settings.baseline_steps)
    runs = {name: [] for name in arms}
    downstream_runs = {BASELINE: [], COMBINATION: []}
    with tempfile.TemporaryDirectory() as scratch:
        def train(name, arm, seed):
            if progress:
                progress(f"{name}, seed {seed}, {steps[name]} steps")
            trainer = _arm_trainer(baseline, arm, tokenizer, train_blocks, eval_blocks, steps[name], settings, seed,
                                   device)
            history = trainer.train()
            runs.setdefault(name, []).append({"seed": seed, "steps": steps[name], "eval": history.eval})
            if downstream and name in downstream_runs and seed in settings.finetune_seeds:
                directory = trainer.save_model(Path(scratch) / f"{len(downstream_runs[name])}-{seed}")
                if progress:
                    progress(f"{name}, seed {seed}: finetuning")
                downstream_runs[name].append({"seed": seed, **downstream(directory, seed)})

        for seed in settings.seeds:  # seed by seed, every arm in turn: a slow spell of the machine hits all arms
            for name, arm in arms.items():
                train(name, arm, seed)
        changes, rate = choose_combination(runs, settings)
        combination = {BASELINE: arms[BASELINE], COMBINATION: (changes, rate)}
        timed = measure_throughput(baseline, combination, tokenizer, train_blocks, settings, device)
        throughput[COMBINATION] = throughput[BASELINE] * timed[COMBINATION] / timed[BASELINE]
        steps[COMBINATION] = budget_steps(timed, settings.baseline_steps)[COMBINATION]
        for seed in settings.seeds:
            train(COMBINATION, (changes, rate), seed)
    config = arm_config(baseline, changes)
    return {"settings": settings_dict(settings), "baseline": baseline.to_dict(), "throughput": throughput,
            "steps": steps, "runs": runs, "combination": {"changes": list(changes), "mask_rate": rate},
            "parameters": {name: _parameters(arm_config(baseline, arm[0])) for name, arm in
                           {**arms, COMBINATION: (changes, rate)}.items()},
            "downstream": downstream_runs if downstream else None, "combination_config": config.to_dict()}


def _parameters(config) -> int:
    from ..model import RobertaForMaskedLM

    return RobertaForMaskedLM(config).num_parameters()


def ablation_results_path(scale: str) -> Path:
    return RESULTS_DIR / f"beyond_roberta-{scale}.json"


def load_ablation_result(scale: str) -> dict | None:
    """The cached full result of notebook 11's ladder for ``scale``, or None when it has not been computed."""
    return _load_cached(ablation_results_path(scale), lambda r: BASELINE in r.get("runs", {}) and "throughput" in r,
                        "beyond-roberta", scale)


def topic_finetuning(tokenizer, max_length: int, settings: FinetuneExperiment, lr: float, device: str = "cpu"):
    """``downstream`` for run_ablation: notebook 06's topic classifier finetuned from a pretrained directory with
    notebook 06's recipe; validation and test accuracy and macro-F1."""
    from ..finetuning import predict

    names, train, validation, test = encoded_topics(tokenizer, max_length)
    num_labels = len(names)

    def run(pretrained_dir, seed: int) -> dict:
        model, _ = finetune_arm("pretrained", pretrained_dir, num_labels, train, validation, lr, seed, settings,
                                tokenizer.pad_token_id, device)
        return {split: _accuracy(torch.tensor([e["label"] for e in examples]),
                                 predict(model, examples, tokenizer.pad_token_id), num_labels)
                for split, examples in (("validation", validation), ("test", test))}

    return run


def settings_dict(settings) -> dict:
    """The settings as JSON holds them (tuples as lists), to compare a cached result with the code."""
    return json.loads(json.dumps(asdict(settings)))


def spread(runs: list[dict], split: str = "test", metric: str = "accuracy") -> tuple[float, float, int]:
    """Mean and standard deviation over the seeds of one sweep or curve cell, and the number of seeds."""
    return _mean_sd([run[split][metric] for run in runs])


def test_difference(runs_a: list[dict], runs_b: list[dict]):
    """Arm a's test accuracy minus arm b's, with the course's paired bootstrap over the seeds and the test examples
    (``stats.paired_bootstrap``): two lists of runs (one sweep or curve cell each) of the same seeds in the same
    order, each run holding which test examples it got right."""
    from ..stats import paired_bootstrap

    if [r["seed"] for r in runs_a] != [r["seed"] for r in runs_b]:
        raise ValueError("pair runs of the same seeds, in the same order")
    return paired_bootstrap([r["test"]["correct"] for r in runs_a], [r["test"]["correct"] for r in runs_b])


def finetuning_results_path(scale: str) -> Path:
    return RESULTS_DIR / f"finetuning-{scale}.json"


def load_finetuning_result(scale: str) -> dict | None:
    """The cached full result of notebook 06's experiment for ``scale``, or None when it has not been computed."""
    def valid(r):
        return (set(r.get("sweep", {})) == set(FINETUNE_ARMS) | {"bag of words"} and "label_efficiency" in r
                and all("correct" in run["test"] for runs in r["sweep"].values() for run in next(iter(runs.values()))))

    return _load_cached(finetuning_results_path(scale), valid, "finetuning", scale)


# ----------------------------------------------------------------------------------------------- for the notebooks

LOADERS = {"static-vs-dynamic": "load_result", "finetuning": "load_finetuning_result",
           "beyond-roberta": "load_ablation_result"}


def cached_results(experiment: str, scale: str, verbose: bool = True) -> dict | None:
    """The cached full result of ``experiment`` (a key of LOADERS) for ``scale``; where that scale has none, the
    cpu scale's (FALLBACK_SCALE), said as such; None when neither exists.

    The result comes back with three more fields: ``scale`` (the scale whose run it is), ``device`` (what computed
    it) and ``label``, one line with both and the command that made it, which ``verbose`` prints. A notebook
    compares its live run with the cached seeds only where ``result["scale"]`` is its own scale: another scale's
    runs trained another model."""
    if experiment not in LOADERS:
        raise ValueError(f"unknown experiment {experiment!r}: choose one of {', '.join(LOADERS)}")
    load = globals()[LOADERS[experiment]]
    source, result = scale, load(scale)
    if result is None and scale != FALLBACK_SCALE:
        source, result = FALLBACK_SCALE, load(FALLBACK_SCALE)
    if result is None:
        if verbose:
            print(f"no cached result of {experiment} for the {scale} scale: make it with `python -m "
                  f"roberta_from_scratch experiments {experiment} --scale {scale}`")
        return None
    device = result.get("device", "a device not recorded")
    label = (f"cached results of the {source} scale, computed on {device} by `{result['command']}` (torch "
             f"{result.get('torch', '?')})")
    if source != scale:
        label += (f"; the {scale} scale has no cached results of its own (make them on a GPU with `python -m "
                  f"roberta_from_scratch experiments {experiment} --scale {scale}`), so these describe the "
                  f"{source} scale's model, not this run's")
    if verbose:
        print(label)
    return {**result, "scale": source, "device": device, "label": label}


def live_settings(experiment: str, scale: Scale):
    """The settings of a notebook's live run of ``experiment`` at ``scale`` (a ``settings.Scale``): the table's
    (MASKING, FINETUNING, ABLATION), with every count that scales with the budget passed through ``scale.cut``, so
    that a rehearsal (RFS_REHEARSAL=1) runs each loop a step or two on a few blocks and keeps every branch."""
    from dataclasses import replace

    cut = scale.cut
    if experiment == "static-vs-dynamic":
        live = MASKING[scale.name]["live"]
        return replace(live, blocks=cut(live.blocks, few=8), batch_size=cut(live.batch_size, few=8),
                       epochs=cut(live.epochs, few=1), evaluations=cut(live.evaluations, few=1))
    if experiment == "finetuning":
        live = FINETUNING[scale.name]["live"]
        return replace(live, epochs=min(live.epochs, scale.finetune_epochs), seeds=live.seeds[:cut(len(live.seeds))],
                       min_steps=cut(live.min_steps), bow_steps=cut(live.bow_steps))
    if experiment == "beyond-roberta":
        live = ABLATION[scale.name]["live"]
        return replace(live, baseline_steps=cut(live.baseline_steps, few=2), batch_size=cut(live.batch_size, few=8),
                       seeds=live.seeds[:cut(len(live.seeds), few=1)],
                       mask_rates=live.mask_rates[:cut(len(live.mask_rates), few=1)],
                       changes=live.changes[:cut(len(live.changes), few=1)],
                       timing_rounds=cut(live.timing_rounds, few=1), timing_steps=cut(live.timing_steps, few=1),
                       evaluations=cut(live.evaluations, few=1),
                       finetune_seeds=live.finetune_seeds[:cut(len(live.finetune_seeds), few=1)])
    raise ValueError(f"unknown experiment {experiment!r}: choose one of {', '.join(LOADERS)}")


def device_description(device=None) -> str:
    """What a cached result was computed on, in words: the GPU's name, or the CPU and its threads."""
    from ..settings import pick_device

    device = pick_device(device) if device is None or isinstance(device, str) else device
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "an Apple GPU (MPS)"
    return f"a CPU ({torch.get_num_threads()} threads)"


def unigram_baseline(scale_name: str, at_mask: bool = False) -> tuple[str, float]:
    """Always guessing the most frequent training token at ``scale_name``'s tokenizer: the token, and its accuracy
    on the held-out masks every run of these experiments is evaluated on (the Trainer's: the first 256 held-out
    blocks, masked at 15% with the seed EVAL_MASK_SEED), over every labelled target or, with ``at_mask``, over those
    shown ``<mask>``."""
    from collections import Counter

    from ..masking import DataCollatorForMLM
    from ..training import EVAL_MASK_SEED

    tokenizer, _, _, train_blocks, eval_blocks = course_setting(scale_name)
    special = set(tokenizer.special_ids)
    token = Counter(t for block in train_blocks for t in block if t not in special).most_common(1)[0][0]
    masked = DataCollatorForMLM(tokenizer, mlm_probability=EVAL_MASK_RATE)(
        eval_blocks[:256], generator=torch.Generator().manual_seed(EVAL_MASK_SEED))
    chosen = masked["labels"] != IGNORE_INDEX
    if at_mask:
        chosen &= masked["input_ids"] == tokenizer.mask_token_id
    return tokenizer.decode([token]), (masked["labels"][chosen] == token).float().mean().item()


def course_classification(scale_name: str):
    """Notebook 06's setting: the pretrained encoder of notebook 05, its tokenizer, the topic names and the
    encoded train, validation and test sets (texts cut to the encoder's length)."""
    from ..config import RobertaConfig
    from .reference import course_pretrained_model

    pretrained_dir, tokenizer = course_pretrained_model(scale_name)
    names, *splits = encoded_topics(tokenizer, RobertaConfig.load(pretrained_dir).max_tokens)
    return pretrained_dir, tokenizer, names, *splits


def encoded_topics(tokenizer, max_length: int):
    """The python-docs-topics names and its train, validation and test sets encoded by ``tokenizer``, texts cut to
    ``max_length`` tokens."""
    from ..data import load_classification
    from ..finetuning import encode_examples

    topics = load_classification("python-docs-topics")
    names = topics["train"].features["label"].names
    return names, *(encode_examples(topics[split], tokenizer, max_length, len(names))
                    for split in ("train", "validation", "test"))


def course_setting(scale_name: str):
    """The tokenizer, model config, collator and blocks of notebook 05 at this scale."""
    from ..data import load_corpus
    from ..packing import pack_dataset
    from ..masking import DataCollatorForMLM
    from .artifacts import course_tokenizer

    recipe = SCALES[scale_name].pretrain
    tokenizer = course_tokenizer(recipe.vocab_size)
    corpus = load_corpus()
    train_blocks = list(pack_dataset(corpus["train"], tokenizer, recipe.seq_len)["input_ids"])
    eval_blocks = list(pack_dataset(corpus["validation"], tokenizer, recipe.seq_len)["input_ids"])
    return tokenizer, recipe.model_config(tokenizer.vocab_size), DataCollatorForMLM(tokenizer), train_blocks, eval_blocks


def recipe_dict(scale_name: str) -> dict:
    """The scale's pretraining recipe as a cached result records it: the model both experiments start from."""

    return json.loads(json.dumps(asdict(SCALES[scale_name].pretrain)))


def _write_result(result: dict, output: Path, command: str, scale_name: str, device=None) -> None:
    from ..files import atomic_write

    result["recipe"] = recipe_dict(scale_name)
    result["command"] = command
    result["torch"] = torch.__version__
    result["device"] = device_description(device)
    atomic_write(output, json.dumps(result, indent=1) + "\n")


def _static_vs_dynamic(args) -> None:
    settings = MASKING[args.scale]["full"]
    _, config, collator, train_blocks, eval_blocks = course_setting(args.scale)
    print(f"{settings}: {settings.steps} steps per run, {2 * len(settings.seeds)} runs", flush=True)
    result = run_masking_experiment(config, collator, train_blocks, eval_blocks, settings, device=args.device,
                                    progress=lambda arm, seed: print(f"  {arm}, seed {seed}", flush=True))
    output = args.output or results_path(args.scale)
    _write_result(result, output, f"python -m roberta_from_scratch experiments static-vs-dynamic --scale {args.scale}",
                  args.scale, args.device)
    for arm in ("dynamic", "static"):
        for metric in ("loss", "accuracy"):
            mean, sd, n = final_spread(result, arm, metric)
            print(f"{arm:>8} {metric}: {mean:.4f} ± {sd:.4f} over {n} seeds")
    for metric in MASKING_METRICS:
        print(f"dynamic minus static, {metric}: {masking_difference(result, metric)}")
    print(f"wrote {output}")


def _finetuning(args) -> None:
    settings = FINETUNING[args.scale]["full"]
    pretrained_dir, tokenizer, names, train, validation, test = course_classification(args.scale)
    print(settings, flush=True)
    result = run_finetuning_experiment(
        pretrained_dir, tokenizer, train, validation, test, len(names), settings, device=args.device,
        progress=lambda arm, lr, seed, n: print(f"  {arm}, lr {lr:g}, seed {seed}, {n} examples", flush=True))
    output = args.output or finetuning_results_path(args.scale)
    _write_result(result, output, f"python -m roberta_from_scratch experiments finetuning --scale {args.scale}",
                  args.scale, args.device)
    for arm, lr in result["chosen"].items():
        mean, sd, n = spread(result["sweep"][arm][repr(lr)])
        print(f"{arm:>12} lr {lr:g}: test accuracy {mean:.3f} ± {sd:.3f} over {n} seeds")
    print(f"wrote {output}")


def _beyond_roberta(args) -> None:

    settings = ABLATION[args.scale]["full"]
    tokenizer, _, _, train_blocks, eval_blocks = course_setting(args.scale)
    baseline = ablation_baseline(args.scale)
    downstream = topic_finetuning(tokenizer, baseline.max_tokens, FINETUNING[args.scale]["full"],
                                  SCALES[args.scale].finetune_lr, args.device) \
        if settings.finetune_seeds else None
    print(settings, flush=True)
    result = run_ablation(baseline, tokenizer, train_blocks, eval_blocks, settings, device=args.device,
                          downstream=downstream, progress=lambda text: print(f"  {text}", flush=True))
    output = args.output or ablation_results_path(args.scale)
    _write_result(result, output, f"python -m roberta_from_scratch experiments beyond-roberta --scale {args.scale}",
                  args.scale, args.device)
    for name, runs in result["runs"].items():
        mean, sd, n = _mean_sd(final_losses(runs))
        print(f"{name:>18}: {result['throughput'][name]:8,.0f} tokens/s, {result['steps'][name]:5} steps, held-out "
              f"loss {mean:.3f} ± {sd:.3f} over {n} seeds")
    print(f"wrote {output}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m roberta_from_scratch experiments",
                                     description="Run an experiment in full and cache its result for the notebooks.")
    parser.add_argument("experiment", choices=["static-vs-dynamic", "finetuning", "beyond-roberta"])
    parser.add_argument("--scale", choices=list(MASKING), default="cpu",
                        help="the notebook scale whose model, data and full-run sizes to use (default cpu)")
    parser.add_argument("--device", help="cpu, cuda or mps (default: the best available)")
    parser.add_argument("--output", type=Path, help=f"default: {RESULTS_DIR.name}/EXPERIMENT-SCALE.json")
    args = parser.parse_args(argv)
    {"static-vs-dynamic": _static_vs_dynamic, "finetuning": _finetuning,
     "beyond-roberta": _beyond_roberta}[args.experiment](args)


if __name__ == "__main__":
    main()
