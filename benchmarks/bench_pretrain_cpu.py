"""Equal wall-clock pretraining on the CPU: our model (with its sparse MLM head, and with the head on every position)
against transformers' RobertaForMaskedLM (SDPA).

All train with the same loop (the package's Trainer: the same AdamW, schedule, clipping, data order and masks),
the same config (the cpu recipe of notebook 05) and the same python-docs blocks, for the same wall-clock budget:
each model trains until the budget is spent, with the warm-up and the linear decay laid over the clock instead of a
step count (the rate reaches zero when the budget does), so no step-time estimate decides how long a model trains.
Then all are evaluated on the same held-out blocks with the same masks.

Each arm runs once per seed (the seed sets the initial weights, the same for the three arms, and the data order and
masks); after 2 s of untimed warm-up per arm, the runs interleave, seed by seed, the arms' order rotating from one
seed to the next, so that a slower or busier stretch of the machine does not fall on one arm. The table gives every
run, then each arm's mean and range (min - max) over the seeds; the sentences after it compare the ranges: where
they overlap, the arms are not distinguishable at this budget. The default budget is short (80 s a run: 3 seeds x 3
arms in about 13 minutes on 2 cores).

    python benchmarks/bench_pretrain_cpu.py [--seconds 80] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import time

import torch
from results import dense_head_model, load_reference_weights, machine_line, write_section

from roberta_from_scratch import load_corpus
from roberta_from_scratch.packing import pack_dataset
from roberta_from_scratch.weights import to_hf_state_dict
from roberta_from_scratch.masking import DataCollatorForMLM
from roberta_from_scratch.model import RobertaForMaskedLM
from roberta_from_scratch.commands.pretrain import RECIPES
from roberta_from_scratch.course.artifacts import course_tokenizer
from roberta_from_scratch.training import Trainer, TrainingConfig, evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=80, help="training-step budget of each run")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    import transformers

    recipe = RECIPES["cpu"]
    tokenizer = course_tokenizer(recipe.vocab_size, verbose=False)
    corpus = load_corpus(verbose=False)
    train = list(pack_dataset(corpus["train"], tokenizer, recipe.seq_len)["input_ids"])
    held_out = list(pack_dataset(corpus["validation"], tokenizer, recipe.seq_len)["input_ids"])
    config = recipe.model_config(tokenizer.vocab_size)  # dropout as the recipe says, for both models

    def model(name, seed):
        torch.manual_seed(seed)
        ours = RobertaForMaskedLM(config)
        if name == "ours":
            return ours
        if name == "ours, head on every position":
            dense = dense_head_model(config)
            dense.load_state_dict(ours.state_dict())
            return dense
        theirs = transformers.RobertaForMaskedLM(transformers.RobertaConfig(**config.to_dict(),
                                                                            attn_implementation="sdpa"))
        load_reference_weights(theirs, to_hf_state_dict(ours))  # the same initial weights (checked)
        theirs.config.feed_forward = config.feed_forward  # read by the Trainer's FLOP count (flops_per_token)
        return theirs

    def timed_run(name, seed, seconds):
        """Train until ``seconds`` of training steps are spent; the schedule follows the clock."""
        cfg = TrainingConfig(max_steps=10**9, batch_size=recipe.batch_size, lr=recipe.lr, warmup_steps=1,
                             eval_every=10**9, progress=False, device="cpu", seed=seed)
        run = Trainer(model(name, seed), train, DataCollatorForMLM(tokenizer), cfg, held_out)
        start = time.perf_counter()

        def multiplier(_step):  # 5% of the budget to warm up, then linear decay to zero at the budget's end
            fraction = min(1.0, (time.perf_counter() - start) / seconds)
            return max(fraction / 0.05, 1e-3) if fraction < 0.05 else (1.0 - fraction) / 0.95

        run.scheduler = torch.optim.lr_scheduler.LambdaLR(run.optimizer, multiplier)
        steps = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:  # the training steps alone are timed
            run.train_step()
            steps += 1
        return run, steps, time.perf_counter() - start

    rows = ["| model | seed | seconds per step | steps in the budget | tokens/s | held-out masked-token accuracy | "
            "held-out loss |", "|---|---|---|---|---|---|---|"]
    results = {name: [] for name in ARMS}
    for name in ARMS:  # untimed: the process's one-time costs (first kernels, allocations) fall on no run's budget
        timed_run(name, args.seeds[0], 2.0)
    for i, seed in enumerate(args.seeds):
        for name in ARMS[i % len(ARMS):] + ARMS[:i % len(ARMS)]:  # interleaved, the order rotating per seed
            run, steps, elapsed = timed_run(name, seed, args.seconds)
            final = evaluate(run.model, run.eval_batches, run.device, run.precision)
            tokens = recipe.batch_size * recipe.seq_len * steps / elapsed
            results[name].append({"steps": steps, "tokens_per_s": tokens, "accuracy": final["accuracy"],
                                  "loss": final["loss"]})
            rows.append(f"| {name} | {seed} | {elapsed / steps:.3f} | {steps:,} | {tokens:,.0f} | "
                        f"{final['accuracy']:.1%} | {final['loss']:.3f} |")
            print(rows[-1], flush=True)

    def spread(name, key, form):  # mean (min - max) over the seeds
        values = [r[key] for r in results[name]]
        return f"{form(sum(values) / len(values))} ({form(min(values))} - {form(max(values))})"

    rows += ["", f"Over the {len(args.seeds)} seeds, mean (min - max):", "",
             "| model | steps in the budget | tokens/s | held-out masked-token accuracy | held-out loss |",
             "|---|---|---|---|---|"]
    for name in ARMS:
        rows.append(f"| {name} | {spread(name, 'steps', lambda v: f'{v:,.0f}')} | "
                    f"{spread(name, 'tokens_per_s', lambda v: f'{v:,.0f}')} | "
                    f"{spread(name, 'accuracy', lambda v: f'{v:.1%}')} | "
                    f"{spread(name, 'loss', lambda v: f'{v:.3f}')} |")
        print(rows[-1], flush=True)
    verdicts = [compare(results, a, "transformers", key) for a in ARMS[:2] for key in ("accuracy", "loss")]
    rows += ["", f"Budget {args.seconds:.0f} s of training steps per run (one evaluation after them; each model "
             "trains until the budget is spent, its schedule laid over the clock), the same held-out blocks and masks "
             f"for all; seeds {', '.join(map(str, args.seeds))}, each setting the initial weights (the same for the "
             "three arms), the data order and the masks; the runs interleave seed by seed, the arms' order rotating. "
             "The first arm runs our MLM head on the labelled positions only (an algorithmic saving), the second on "
             "every position as transformers does (equal work per step, the same function"
             + (": with dropout 0 it and transformers differ only in rounding and in the steps the clock allows). "
                if recipe.dropout == 0 else "). ") + " ".join(verdicts) +
             f" The cpu recipe: preset {recipe.preset}, vocabulary {tokenizer.vocab_size:,}, blocks of "
             f"{recipe.seq_len}, batch {recipe.batch_size}, lr {recipe.lr:g}, dropout {recipe.dropout:g}, linear "
             "warm-up (5% of the budget) and decay to zero at its end, fp32. "
             f"{machine_line(transformers=transformers.__version__)}"]
    table = "\n".join(rows)
    write_section("pretraining, equal wall-clock, cpu", table)
    print(table)


ARMS = ("ours", "ours, head on every position", "transformers")


def compare(results: dict, a: str, b: str, key: str) -> str:
    """One sentence on arm ``a`` against arm ``b`` in ``key`` over the seeds: their ranges overlap (the seeds'
    spread covers the gap: not distinguishable), or every run of one is better than every run of the other."""
    what = {"accuracy": "held-out accuracy", "loss": "held-out loss"}[key]
    va, vb = [r[key] for r in results[a]], [r[key] for r in results[b]]
    if min(va) <= max(vb) and min(vb) <= max(va):
        return (f"In {what}, {a} and {b} overlap over the seeds: not distinguishable at this budget and this "
                "number of seeds.")
    better_a = min(va) > max(vb) if key == "accuracy" else max(va) < min(vb)  # accuracy: higher; loss: lower
    best, other = (a, b) if better_a else (b, a)
    return f"In {what}, every run of {best} is better than every run of {other}."


if __name__ == "__main__":
    main()
