"""Finetune a pretrained RoBERTa for classification from the command line, with the code notebook 06 uses.

    python -m roberta_from_scratch.finetune --model data/artifacts/pretrain-cpu/final --output-dir runs/topics
    python -m roberta_from_scratch.finetune --model FacebookAI/roberta-base --task sst2 --lr 2e-5 --epochs 3 \\
        --batch-size 32 --output-dir runs/sst2                            # online

The model directory must hold a tokenizer (vocab.json + merges.txt) or ``--tokenizer`` names one. The finetuned
model is saved in transformers' layout in ``OUTPUT_DIR`` with its tokenizer.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .cli import (check_device, non_negative_float, non_negative_int, positive_float, positive_int, probability,
                  writable_dir)


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(prog="python -m roberta_from_scratch.finetune", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a model directory or Hub id (e.g. FacebookAI/roberta-base)")
    parser.add_argument("--tokenizer", help="default: the model's own")
    parser.add_argument("--task", default="python-docs-topics", help="python-docs-topics or sst2")
    parser.add_argument("--epochs", type=positive_int, default=10)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--lr", type=positive_float, default=2e-5)
    parser.add_argument("--weight-decay", type=non_negative_float, default=0.1)
    parser.add_argument("--warmup-ratio", type=probability, default=0.06)
    parser.add_argument("--max-length", type=positive_int, default=128)
    parser.add_argument("--trainable-layers", type=non_negative_int, help="freeze all but the top N encoder layers (0: probe)")
    parser.add_argument("--device")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    check_device(parser, args.device)

    import torch

    from . import load_classification
    from .finetuning import FINETUNE_DROPOUT, FinetuneConfig, encode_examples, finetune, freeze
    from .model import RobertaForSequenceClassification
    from .tokenizer import ByteLevelBPETokenizer

    try:  # the run's settings, checked before anything is loaded or trained
        cfg = FinetuneConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             weight_decay=args.weight_decay, warmup_ratio=args.warmup_ratio,
                             max_length=args.max_length, seed=args.seed, device=args.device,
                             progress=not args.no_progress)
    except ValueError as error:
        parser.error(str(error))
    writable_dir(args.output_dir)  # a model that cannot be saved must not be trained first
    data = load_classification(args.task)
    names = data["train"].features["label"].names
    torch.manual_seed(args.seed)
    model = RobertaForSequenceClassification.from_pretrained(args.model, num_labels=len(names),
                                                             id2label=dict(enumerate(names)), **FINETUNE_DROPOUT)
    print(f"loaded {args.model}: {model.load_report}")
    tokenizer = ByteLevelBPETokenizer.from_pretrained(args.tokenizer or args.model)
    if args.trainable_layers is not None and args.trainable_layers > model.config.num_hidden_layers:
        parser.error(f"--trainable-layers {args.trainable_layers}: the model has {model.config.num_hidden_layers} "
                     "layers (0 trains the head alone)")
    cfg.max_length = min(args.max_length, model.config.max_tokens)
    train = encode_examples(data["train"], tokenizer, cfg.max_length, len(names))
    validation = encode_examples(data["validation"], tokenizer, cfg.max_length, len(names))
    trainable = freeze(model, args.trainable_layers)
    print(f"{len(train):,} training and {len(validation):,} validation examples; {trainable:,} trainable parameters")
    history = finetune(model, train, validation, cfg, tokenizer.pad_token_id)
    for record in history.eval:
        print(f"epoch {record['epoch']}: validation accuracy {record['accuracy']:.1%}, macro-F1 {record['macro_f1']:.3f}")
    out = model.save_pretrained(Path(args.output_dir))
    tokenizer.save(out)
    (out / "history.json").write_text(json.dumps({"train": history.train, "eval": history.eval}))
    print(f"saved to {out}")
    return model, history


if __name__ == "__main__":
    main()
