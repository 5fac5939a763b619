"""Finetune a pretrained RoBERTa from the command line: classification, tagging or question answering.

    python -m roberta_from_scratch finetune --model data/artifacts/pretrain-cpu/final --output-dir runs/topics
    python -m roberta_from_scratch finetune --model data/artifacts/pretrain-cpu/final --task python-docs-entities \\
        --lr 1e-3 --epochs 2 --output-dir runs/entities                   # tagging: entity F1 per epoch
    python -m roberta_from_scratch finetune --model data/artifacts/pretrain-cpu/final --task python-docs-qa \\
        --lr 1e-3 --epochs 3 --output-dir runs/qa                         # question answering: EM and F1
    python -m roberta_from_scratch finetune --model FacebookAI/roberta-base --task sst2 --lr 2e-5 --epochs 3 \\
        --batch-size 32 --output-dir runs/sst2                            # online
    python -m roberta_from_scratch finetune --model FacebookAI/roberta-base --task conll2003 --lr 3e-5 --epochs 3 \\
        --output-dir runs/conll2003                                       # online
    python -m roberta_from_scratch finetune --model FacebookAI/roberta-base --task squad --lr 3e-5 --epochs 2 \\
        --max-length 384 --stride 128 --output-dir runs/squad             # online

The code is the notebooks': 06 for classification, 09 for tagging and question answering. The offline tagging
and question-answering examples take notebook 09's cpu-scale rate and epochs (the small cpu model wants a higher
rate than roberta-base's 2e-5 to 3e-5). The model directory must hold a tokenizer (vocab.json + merges.txt) or
``--tokenizer`` names one. The finetuned model is saved in transformers' layout in ``OUTPUT_DIR`` with its
tokenizer and ``history.json``: the training losses, the validation scores per epoch and, for tagging and question
answering, the test scores where the data set has a test split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .options import (check_device, non_negative_float, non_negative_int, positive_float, positive_int, probability,
                  run_command)
from ..files import writable_dir

# --task -> its family. The names are those of the loaders (data.load_classification, tagging.load_tagging,
# qa.load_qa; a test keeps them equal), spelled out here so that reading the command line loads no data library.
TASKS = {"python-docs-topics": "classification", "sst2": "classification",
         "python-docs-entities": "tagging", "conll2003": "tagging",
         "python-docs-qa": "qa", "squad": "qa"}


def default_stride(max_length: int) -> int:
    """The tokens neighbouring question-answering windows share when ``--stride`` is not given. 128 is the
    ``--doc_stride`` of transformers' SQuAD script (examples/pytorch/question-answering/run_qa.py, with windows of
    384), used as an overlap as here; a window of at most 128 tokens (the course's models have 64 to 128
    positions) would keep little context beyond such an overlap, so it shares 16, as notebook 09 does."""
    return 16 if max_length <= 128 else 128


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(prog="python -m roberta_from_scratch finetune", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a model directory or Hub id (e.g. FacebookAI/roberta-base)")
    parser.add_argument("--tokenizer", help="default: the model's own")
    parser.add_argument("--task", default="python-docs-topics", choices=list(TASKS), metavar="TASK",
                        help="classification: python-docs-topics (default), sst2; tagging: python-docs-entities, "
                             "conll2003; question answering: python-docs-qa, squad")
    parser.add_argument("--epochs", type=positive_int, default=10)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--lr", type=positive_float, default=2e-5)
    parser.add_argument("--weight-decay", type=non_negative_float, default=0.1)
    parser.add_argument("--warmup-ratio", type=probability, default=0.06)
    parser.add_argument("--max-length", type=positive_int, default=128)
    parser.add_argument("--stride", type=non_negative_int,
                        help="question answering: tokens shared by neighbouring windows of a long context, below "
                             "--max-length (default: 16 for a max length up to 128, else 128)")
    parser.add_argument("--trainable-layers", type=non_negative_int, help="freeze all but the top N encoder layers (0: probe)")
    parser.add_argument("--device")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    check_device(parser, args.device)
    return run_command(run, parser, args)


def run(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """The command, its options read: check them, load, finetune, save."""
    if args.stride is not None:
        if TASKS[args.task] != "qa":
            parser.error(f"--stride applies to question answering (python-docs-qa, squad), not to {args.task}")
        if args.stride >= args.max_length:
            parser.error(f"--stride {args.stride}: windows of --max-length {args.max_length} tokens must share "
                         f"fewer than {args.max_length}")

    from ..finetuning import FinetuneConfig

    try:  # the run's settings, checked before anything is loaded or trained
        cfg = FinetuneConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             weight_decay=args.weight_decay, warmup_ratio=args.warmup_ratio,
                             max_length=args.max_length, seed=args.seed, device=args.device,
                             progress=not args.no_progress)
    except ValueError as error:
        parser.error(str(error))
    writable_dir(args.output_dir)  # a model that cannot be saved must not be trained first
    family = {"classification": _classification, "tagging": _tagging, "qa": _question_answering}[TASKS[args.task]]
    model, tokenizer, history, test = family(parser, args, cfg)
    out = model.save_pretrained(Path(args.output_dir))
    tokenizer.save(out)
    record = {"train": history.train, "eval": history.eval, **({"test": test} if test is not None else {})}
    (out / "history.json").write_text(json.dumps(record))
    print(f"saved to {out}")
    return model, history


# ----------------------------------------------------------------------------------------------- the families
# Each loads its data, builds its model (see _load), encodes, trains (see _train) and prints its scores; it
# returns the model, the tokenizer, the history and the test scores (None where it computes none).


def _classification(parser, args, cfg):
    from ..data import load_classification
    from ..finetuning import encode_examples
    from ..model import RobertaForSequenceClassification

    data = load_classification(args.task)
    names = data["train"].features["label"].names
    model, tokenizer = _load(parser, args, cfg, RobertaForSequenceClassification, num_labels=len(names),
                             id2label=dict(enumerate(names)))
    train = encode_examples(data["train"], tokenizer, cfg.max_length, len(names))
    validation = encode_examples(data["validation"], tokenizer, cfg.max_length, len(names))
    history = _train(model, train, validation, cfg, tokenizer, args,
                     f"{len(train):,} training and {len(validation):,} validation examples")
    for record in history.eval:
        print(f"epoch {record['epoch']}: validation accuracy {record['accuracy']:.1%}, macro-F1 {record['macro_f1']:.3f}")
    return model, tokenizer, history, None


def _tagging(parser, args, cfg):
    from .. import tagging
    from ..model import RobertaForTokenClassification

    data = tagging.load_tagging(args.task)
    names = tagging.label_names(data)
    model, tokenizer = _load(parser, args, cfg, RobertaForTokenClassification, num_labels=len(names),
                             id2label=dict(enumerate(names)))
    train = tagging.encode_tagging(data["train"], tokenizer, cfg.max_length)
    validation = tagging.encode_tagging(data["validation"], tokenizer, cfg.max_length)
    history = _train(model, train, validation, cfg, tokenizer, args,
                     f"{len(train):,} training and {len(validation):,} validation sentences",
                     evaluate=lambda m: tagging.tag_scores(m, validation, data["validation"]["ner_tags"], names,
                                                           tokenizer.pad_token_id))

    def line(scores):
        return f"entity F1 {scores['f1']:.3f} (precision {scores['precision']:.3f}, recall {scores['recall']:.3f})"

    for record in history.eval:
        print(f"epoch {record['epoch']}: validation {line(record)}")
    test = None
    if "test" in data:
        examples = tagging.encode_tagging(data["test"], tokenizer, cfg.max_length)
        test = tagging.tag_scores(model, examples, data["test"]["ner_tags"], names, tokenizer.pad_token_id)
        kinds = ", ".join(f"{key[3:]} {value:.3f}" for key, value in test.items() if key.startswith("f1 "))
        print(f"test ({len(examples):,} sentences): {line(test)}; F1 per type: {kinds}")
    return model, tokenizer, history, test


def _question_answering(parser, args, cfg):
    from .. import qa
    from ..model import RobertaForQuestionAnswering

    data = qa.load_qa(args.task)
    model, tokenizer = _load(parser, args, cfg, RobertaForQuestionAnswering)
    if args.stride is not None and args.stride >= cfg.max_length:
        parser.error(f"--stride {args.stride}: the model reads {cfg.max_length} tokens at most, so windows must "
                     f"share fewer than {cfg.max_length}")
    stride = default_stride(cfg.max_length) if args.stride is None else args.stride

    def scores(m, split):
        return qa.squad_scores(qa.predict_answers(m, tokenizer, data[split], cfg.max_length, stride), data[split])

    train = qa.encode_qa(data["train"], tokenizer, cfg.max_length, stride)
    history = _train(model, train, [], cfg, tokenizer, args,
                     f"{len(train):,} training windows ({len(data['train']):,} questions, stride {stride}) and "
                     f"{len(data['validation']):,} validation questions",
                     evaluate=lambda m: scores(m, "validation"))
    for record in history.eval:
        print(f"epoch {record['epoch']}: validation exact match {record['exact_match']:.1f}, F1 {record['f1']:.1f}")
    test = None
    if "test" in data:
        test = scores(model, "test")
        print(f"test ({len(data['test']):,} questions): exact match {test['exact_match']:.1f}, F1 {test['f1']:.1f}")
    return model, tokenizer, history, test


# ----------------------------------------------------------------------------------------------- shared steps


def _load(parser, args, cfg, cls, **config_overrides):
    """The pretrained encoder with a new ``cls`` head (finetuning's dropout) and the tokenizer; checks
    ``--trainable-layers`` against the model and fits ``cfg.max_length`` to its positions."""
    from ..finetuning import task_model
    from ..tokenizer import ByteLevelBPETokenizer

    model = task_model(cls, args.model, args.seed, **config_overrides)
    print(f"loaded {args.model}: {model.load_report}")
    tokenizer = ByteLevelBPETokenizer.from_pretrained(args.tokenizer or args.model)
    if args.trainable_layers is not None and args.trainable_layers > model.config.num_hidden_layers:
        parser.error(f"--trainable-layers {args.trainable_layers}: the model has {model.config.num_hidden_layers} "
                     "layers (0 trains the head alone)")
    cfg.max_length = min(args.max_length, model.config.max_tokens)
    return model, tokenizer


def _train(model, train, validation, cfg, tokenizer, args, sizes: str, evaluate=None):
    """Freeze as ``--trainable-layers`` says and finetune; ``sizes`` describes the data in the opening line."""
    from ..finetuning import finetune, freeze

    trainable = freeze(model, args.trainable_layers)
    print(f"{sizes}; {trainable:,} trainable parameters")
    return finetune(model, train, validation, cfg, tokenizer.pad_token_id, evaluate=evaluate)


if __name__ == "__main__":
    main()
