"""Pretrain a RoBERTa masked-language model from the command line, with the code notebook 05 uses.

    python -m roberta_from_scratch.pretrain --scale cpu --output-dir runs/cpu
    python -m roberta_from_scratch.pretrain --preset mini --vocab-size 8000 --seq-len 128 --batch-size 32 \\
        --steps 600 --lr 1e-3 --output-dir runs/mine
    python -m roberta_from_scratch.pretrain ... --resume      # continue from the latest checkpoint in output-dir
    torchrun --nproc_per_node=4 -m roberta_from_scratch.pretrain ... [--fsdp]   # the same run on 4 processes

``--scale`` takes every size from ``settings.SCALES``; with ``RFS_REHEARSAL=1`` its steps are cut to a few, as in
the notebooks. The tokenizer comes from notebook 01 (``course_tokenizer``: trained on the fly when missing); the corpus is
``python-docs`` unless ``--corpus`` names another (a Hub corpus when online, or local files). The trained model is
saved in transformers' layout in ``OUTPUT_DIR/final``.

Under torchrun (``distributed.py``), ``--batch-size`` is the global batch, split over the processes; rank 0
alone prints, checkpoints and writes the final model; ``--resume`` works with any number of processes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import torch

from .cli import check_device, non_negative_int, positive_float, positive_int, probability
from .settings import SCALES, get_scale, rehearsed


RECIPES = {name: scale.pretrain for name, scale in SCALES.items()}  # one source: settings.SCALES (as written)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m roberta_from_scratch.pretrain",
                                     description="Masked-language-model pretraining of RoBERTa.")
    parser.add_argument("--scale", choices=list(RECIPES), help="take every size from this scale's recipe "
                        "(default: RFS_SCALE); the options below override it")
    parser.add_argument("--corpus", default="python-docs", help="python-docs, wikitext-103, tinystories or a path")
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
    parser.add_argument("--checkpoint-every", type=non_negative_int, default=100)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the model (default: on CUDA, falling back to eager if it fails)")
    parser.add_argument("--workers", type=non_negative_int, default=0,
                        help="DataLoader worker processes that build (gather and mask) the batches ahead (default 0)")
    parser.add_argument("--log-every", type=positive_int, default=10,
                        help="steps between reads of the losses from the device (default 10)")
    parser.add_argument("--pad-vocab", type=positive_int, default=64, metavar="N",
                        help="round the vocabulary's rows up to a multiple of N for the GPU's matrix engines; files "
                        "keep the real rows (default 64; 1: no padding)")
    parser.add_argument("--activation-checkpointing", action="store_true",
                        help="recompute each layer in the backward pass: less memory, more compute")
    parser.add_argument("--fsdp", action="store_true", help="under torchrun: shard weights, gradients and optimizer "
                        "states over the processes (FSDP) instead of replicating them (DDP)")
    parser.add_argument("--device")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output-dir")
    parser.add_argument("--extend", action="store_true", help="with --resume: allow more --steps than the checkpoint's "
                        "run (the schedule then continues to the new end)")
    parser.add_argument("--overwrite", action="store_true", help="start a new run in an output-dir that holds another "
                        "run's checkpoints (they are deleted)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def check_output_dir(output_dir: str, resume: bool, overwrite: bool) -> Path:
    """Before the first step: an output folder that can be written, and that holds no other run's checkpoints
    unless the run continues them (``--resume``) or replaces them (``--overwrite``)."""
    import shutil

    from .cli import writable_dir
    from .training import latest_checkpoint

    out = writable_dir(output_dir)
    checkpoints = out / "checkpoints"
    if latest_checkpoint(checkpoints) is not None and not resume:
        if not overwrite:
            raise SystemExit(f"{out} holds the checkpoints of an earlier run: --resume continues it, --overwrite "
                             "deletes them and starts over, or choose another --output-dir")
        shutil.rmtree(checkpoints)
    return out


def pick(value, default):
    """An option's value, or the recipe's default when the option was not given."""
    return default if value is None else value


def training_config(args: argparse.Namespace, recipe):
    """The run's TrainingConfig: the options given, the recipe's values for the rest."""
    from .training import TrainingConfig

    return TrainingConfig(
        max_steps=pick(args.steps, recipe.steps), batch_size=pick(args.batch_size, recipe.batch_size),
        micro_batch_size=args.micro_batch_size, lr=pick(args.lr, recipe.lr),
        warmup_steps=pick(args.warmup_steps, recipe.warmup_steps), eval_every=pick(args.eval_every, recipe.eval_every),
        checkpoint_every=args.checkpoint_every, checkpoint_dir=str(Path(args.output_dir) / "checkpoints"),
        seed=args.seed, precision=args.precision, compile=args.compile, device=args.device,
        progress=not args.no_progress, activation_checkpointing=args.activation_checkpointing, fsdp=args.fsdp,
        num_workers=args.workers, log_every=args.log_every, pad_vocab_multiple=args.pad_vocab)


def run(args: argparse.Namespace):
    from . import load_corpus
    from .packing import pack_dataset
    from .masking import DataCollatorForMLM
    from .model import RobertaForMaskedLM
    from .distributed import close_distributed, init_distributed, main_first
    from .artifacts import course_tokenizer
    from .training import Trainer, latest_checkpoint

    rank = init_distributed(args.device)  # under torchrun: join the other processes; else rank 0 of 1
    say = print if rank.is_main else (lambda *a, **k: None)
    if rank.is_main:  # before any work: a run that cannot save its model must not train first
        check_output_dir(args.output_dir, args.resume, args.overwrite)

    scale = get_scale(args.scale)
    recipe = RECIPES[scale.name]
    if scale.rehearsal:  # RFS_REHEARSAL=1: the recipe's steps cut to a few, as in the notebooks
        recipe = rehearsed(dataclasses.replace(scale, pretrain=recipe)).pretrain
    recipe = dataclasses.replace(  # the command line's choices replace the recipe's
        recipe, preset=pick(args.preset, recipe.preset), hidden_size=pick(args.hidden_size, recipe.hidden_size),
        vocab_size=pick(args.vocab_size, recipe.vocab_size), seq_len=pick(args.seq_len, recipe.seq_len),
        dropout=pick(args.dropout, recipe.dropout))
    torch.manual_seed(args.seed)  # the same initial weights in every process
    try:  # settings that fit no run: their own message, before any work
        cfg = training_config(args, recipe)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    with main_first():  # rank 0 builds the caches, the others read them
        tokenizer = course_tokenizer(recipe.vocab_size, verbose=rank.is_main)
        corpus = load_corpus(args.corpus, verbose=rank.is_main)
        train_blocks = list(pack_dataset(corpus["train"], tokenizer, recipe.seq_len)["input_ids"])
        eval_blocks = list(pack_dataset(corpus["validation"], tokenizer, recipe.seq_len)["input_ids"])
    shape = {key: value for key, value in (("num_hidden_layers", args.layers), ("num_attention_heads", args.heads))
             if value is not None}
    try:
        config = recipe.model_config(tokenizer.vocab_size, **shape)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    trainer = Trainer(RobertaForMaskedLM(config), train_blocks, DataCollatorForMLM(tokenizer), cfg, eval_blocks)
    if args.resume:
        if latest_checkpoint(cfg.checkpoint_dir) is None:
            say(f"no checkpoint in {cfg.checkpoint_dir}: starting from step 0")
        else:  # the newest intact checkpoint (a damaged newer one is skipped with a warning)
            try:
                checkpoint = trainer.load_checkpoint(cfg.checkpoint_dir, allow_more_steps=args.extend)
            except ValueError as error:  # damaged checkpoints or changed settings: the message says what to do
                raise SystemExit(f"cannot resume: {error}") from None
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


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_device(parser, args.device)
    run(args)


if __name__ == "__main__":
    main()
