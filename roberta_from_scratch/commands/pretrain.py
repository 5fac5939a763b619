"""Pretrain a RoBERTa masked-language model from the command line, with the code notebook 05 uses.

    python -m roberta_from_scratch pretrain --scale cpu --output-dir runs/cpu
    python -m roberta_from_scratch pretrain --preset mini --vocab-size 8000 --seq-len 128 --batch-size 32 \\
        --steps 600 --lr 1e-3 --output-dir runs/mine
    python -m roberta_from_scratch pretrain ... --resume      # continue from the latest checkpoint in output-dir
    torchrun --nproc_per_node=4 -m roberta_from_scratch pretrain ... [--fsdp]   # the same run on 4 processes

The run itself is ``artifacts.pretrain`` (the function that also makes the course's cached models); this module
reads its options. ``--scale`` takes every size from ``settings.SCALES``; with ``RFS_REHEARSAL=1`` its steps are cut to a few, as in
the notebooks. The tokenizer comes from notebook 01 (``course_tokenizer``: trained on the fly when missing); the corpus is
``python-docs`` unless ``--corpus`` names another (a Hub corpus when online, or local files). The trained model is
saved in transformers' layout in ``OUTPUT_DIR/final``.

Under torchrun (``distributed.py``), ``--batch-size`` is the global batch, split over the processes; rank 0
alone prints, checkpoints and writes the final model; ``--resume`` works with any number of processes.
"""

from __future__ import annotations

import argparse
import dataclasses

from ..course.artifacts import RECIPES, PretrainRun, pretrain
from .options import check_device, non_negative_int, positive_float, positive_int, probability, run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m roberta_from_scratch pretrain",
                                     description="Masked-language-model pretraining of RoBERTa.")
    parser.add_argument("--scale", choices=list(RECIPES), help="take every size from this scale's recipe "
                        "(default: RFS_SCALE); the options below override it")
    parser.add_argument("--corpus", help="python-docs, wikitext-103, tinystories or a path")
    parser.add_argument("--preset", help="model preset: tiny, mini, small, base, large")
    parser.add_argument("--hidden-size", type=positive_int)
    parser.add_argument("--layers", type=positive_int, help="encoder layers (default: the preset's)")
    parser.add_argument("--heads", type=positive_int, help="attention heads per layer (default: the preset's)")
    parser.add_argument("--vocab-size", type=positive_int)
    parser.add_argument("--seq-len", type=positive_int, help="tokens per packed block, <s> included")
    parser.add_argument("--batch-size", type=positive_int, help="sequences per optimizer step (all processes together)")
    parser.add_argument("--micro-batch-size", type=positive_int, help="sequences per forward pass in each process "
                        "(accumulate the rest)")
    parser.add_argument("--dropout", type=probability,
                        help="dropout of hidden states and attention (default: the recipe's: 0.1, or 0 at cpu)")
    parser.add_argument("--lr", type=positive_float)
    parser.add_argument("--steps", type=positive_int)
    parser.add_argument("--warmup-steps", type=non_negative_int)
    parser.add_argument("--eval-every", type=positive_int)
    parser.add_argument("--checkpoint-every", type=non_negative_int)
    parser.add_argument("--keep-checkpoints", type=positive_int, help="how many of the run's newest checkpoints to "
                        "keep (default 2)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction,
                        help="torch.compile the model (default: on CUDA, falling back to eager if it fails)")
    parser.add_argument("--workers", type=non_negative_int,
                        help="DataLoader worker processes that build (gather and mask) the batches ahead (default 0)")
    parser.add_argument("--log-every", type=positive_int,
                        help="steps between reads of the losses from the device (default 10)")
    parser.add_argument("--pad-vocab", type=positive_int, metavar="N",
                        help="round the vocabulary's rows up to a multiple of N for the GPU's matrix engines; files "
                        "keep the real rows (default 64; 1: no padding)")
    parser.add_argument("--activation-checkpointing", action="store_true",
                        help="recompute each layer in the backward pass: less memory, more compute")
    parser.add_argument("--fsdp", action="store_true", help="under torchrun: shard weights, gradients and optimizer "
                        "states over the processes (FSDP) instead of replicating them (DDP)")
    parser.add_argument("--device")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output-dir")
    parser.add_argument("--extend", action="store_true", help="with --resume: allow more --steps than the checkpoint's "
                        "run (the schedule then continues to the new end)")
    parser.add_argument("--overwrite", action="store_true", help="start a new run in an output-dir that holds another "
                        "run's checkpoints (they are deleted)")
    parser.add_argument("--no-progress", action="store_true")
    # one source for the defaults: the fields of PretrainRun, which the options fill
    parser.set_defaults(**{f.name: f.default for f in dataclasses.fields(PretrainRun)
                           if f.default is not dataclasses.MISSING})
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_device(parser, args.device)
    return run_command(pretrain, PretrainRun(**vars(args)))


if __name__ == "__main__":
    main()
