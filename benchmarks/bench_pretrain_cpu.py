"""Equal wall-clock pretraining on the CPU: our model (with its sparse MLM head, and with the head on every position)
against transformers' RobertaForMaskedLM (SDPA).

All train with the same loop (the package's Trainer: the same AdamW, schedule, clipping, data order and masks),
the same config (the cpu recipe of notebook 05) and the same python-docs blocks, for the same wall-clock budget:
each model trains until the budget is spent, with the warm-up and the linear decay laid over the clock instead of a
step count (the rate reaches zero when the budget does), so no step-time estimate decides how long a model trains.
Then all are evaluated on the same held-out blocks with the same masks.

    python benchmarks/bench_pretrain_cpu.py [--seconds 200]
"""

from __future__ import annotations

import argparse
import time

import torch
from results import dense_head_model, machine_line, write_section

from roberta_from_scratch import load_corpus
from roberta_from_scratch.packing import pack_dataset
from roberta_from_scratch.hub import to_hf_state_dict
from roberta_from_scratch.masking import DataCollatorForMLM
from roberta_from_scratch.model import RobertaForMaskedLM
from roberta_from_scratch.pretrain import RECIPES
from roberta_from_scratch.artifacts import course_tokenizer
from roberta_from_scratch.training import Trainer, TrainingConfig, evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=200)
    args = parser.parse_args()
    import transformers

    recipe = RECIPES["cpu"]
    tokenizer = course_tokenizer(recipe.vocab_size, verbose=False)
    corpus = load_corpus(verbose=False)
    train = list(pack_dataset(corpus["train"], tokenizer, recipe.seq_len)["input_ids"])
    held_out = list(pack_dataset(corpus["validation"], tokenizer, recipe.seq_len)["input_ids"])
    config = recipe.model_config(tokenizer.vocab_size)  # dropout as the recipe says, for both models

    def model(name):
        torch.manual_seed(0)
        ours = RobertaForMaskedLM(config)
        if name == "ours":
            return ours
        if name == "ours, head on every position":
            dense = dense_head_model(config)
            dense.load_state_dict(ours.state_dict())
            return dense
        theirs = transformers.RobertaForMaskedLM(transformers.RobertaConfig(**config.to_dict(),
                                                                            attn_implementation="sdpa"))
        theirs.load_state_dict(to_hf_state_dict(ours), strict=False)  # the same initial weights
        return theirs

    def timed_run(name):
        """Train until args.seconds of training steps are spent; the schedule follows the clock."""
        cfg = TrainingConfig(max_steps=10**9, batch_size=recipe.batch_size, lr=recipe.lr, warmup_steps=1,
                             eval_every=10**9, progress=False, device="cpu")
        run = Trainer(model(name), train, DataCollatorForMLM(tokenizer), cfg, held_out)
        start = time.perf_counter()

        def multiplier(_step):  # 5% of the budget to warm up, then linear decay to zero at the budget's end
            fraction = min(1.0, (time.perf_counter() - start) / args.seconds)
            return max(fraction / 0.05, 1e-3) if fraction < 0.05 else (1.0 - fraction) / 0.95

        run.scheduler = torch.optim.lr_scheduler.LambdaLR(run.optimizer, multiplier)
        steps = 0
        start = time.perf_counter()
        while time.perf_counter() - start < args.seconds:  # the training steps alone are timed
            run.train_step()
            steps += 1
        return run, steps, time.perf_counter() - start

    rows = ["| model | seconds per step | steps in the budget | tokens/s | held-out masked-token accuracy | held-out loss |",
            "|---|---|---|---|---|---|"]
    results = {}
    for name in ("ours", "ours, head on every position", "transformers"):
        run, steps, elapsed = timed_run(name)
        per_step = elapsed / steps
        final = evaluate(run.model, run.eval_batches, run.device, run.precision)
        results[name] = final
        tokens = recipe.batch_size * recipe.seq_len * steps / elapsed
        rows.append(f"| {name} | {per_step:.3f} | {steps:,} | {tokens:,.0f} | {final['accuracy']:.1%} | "
                    f"{final['loss']:.3f} |")
        print(rows[-1], flush=True)
    rows += ["", f"Budget {args.seconds:.0f} s of training steps each (timed alone; one evaluation after them; each "
             "model trains until the budget is spent, its schedule laid over the clock), the "
             "same held-out blocks and masks for all. The first row runs our MLM head on the labelled positions "
             "only (an algorithmic saving), the second on every position as transformers does (equal work per "
             "step). The cpu recipe: preset "
             f"{recipe.preset}, vocabulary {tokenizer.vocab_size:,}, blocks of {recipe.seq_len}, batch "
             f"{recipe.batch_size}, lr {recipe.lr:g}, dropout {recipe.dropout:g}, linear warm-up (5% of the budget) and decay to zero at its end, fp32. "
             f"{machine_line(transformers=transformers.__version__)}"]
    table = "\n".join(rows)
    write_section("pretraining, equal wall-clock, cpu", table)
    print(table)


if __name__ == "__main__":
    main()
