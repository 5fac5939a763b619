"""Where one pretraining step's time goes, and the cpu recipe's tokens/s, before and after a change of the loop.

The cpu recipe (notebook 05: 2 x 128, vocabulary 4,000, blocks of 64, batch 64, no dropout) on the python-docs
corpus, trained by the package's Trainer; the same script run against another checkout of the package (``--before
PATH``, for example a ``git worktree`` of an earlier commit) measures that code in the same run, alternating, so
both see the same machine. Then ``torch.profiler`` over one steady-state step of each: the operators that take the
most time (CPU, and CUDA when there is a GPU). Results go to ``results.md``::

    git worktree add /tmp/before 0585a85
    python benchmarks/bench_step.py --before /tmp/before --rounds 3 --steps 60
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(steps: int, profile: bool, workers: int) -> dict:
    """Run in a child process whose PYTHONPATH picks the package to measure."""
    import time

    import torch

    import roberta_from_scratch
    from roberta_from_scratch.course import experiments
    from roberta_from_scratch.model import RobertaForMaskedLM
    from roberta_from_scratch.training import Trainer, TrainingConfig

    tokenizer, config, collator, train_blocks, _ = experiments.course_setting("cpu")
    recipe = experiments.recipe_dict("cpu")
    torch.manual_seed(0)
    fields = dict(max_steps=steps + 5, batch_size=recipe["batch_size"], lr=recipe["lr"], progress=False, device="cpu")
    if workers and "num_workers" in TrainingConfig.__dataclass_fields__:
        fields["num_workers"] = workers
    trainer = Trainer(RobertaForMaskedLM(config), train_blocks, collator, TrainingConfig(**fields))
    trainer.train(until=5)  # warm-up: the first steps allocate
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    tokens = sum(len(block) for step in range(5, 5 + steps) for block in trainer.batches(step))
    result = {"package": str(Path(roberta_from_scratch.__file__).parent.parent), "tokens_per_s": tokens / seconds,
              "seconds": seconds}
    if profile:
        from torch.profiler import ProfilerActivity, profile as profiler

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        trainer.cfg.max_steps += 2
        with profiler(activities=activities) as prof:
            trainer.train_step()
        result["profile"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=40)
    return result


def run(path: Path, steps: int, profile: bool, workers: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(path), "RFS_SCALE": "cpu", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "RFS_DATA_DIR": os.environ.get("RFS_DATA_DIR", str(ROOT / "data"))}
    done = subprocess.run([sys.executable, __file__, "--worker", "--steps", str(steps), "--workers", str(workers),
                           *(["--profile"] if profile else [])], env=env, capture_output=True, text=True, cwd=path)
    if done.returncode:
        raise RuntimeError(f"the benchmark failed for {path}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, help="a checkout of the package before the change")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers for the code that has them")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.steps, args.profile, args.workers)))
        return
    from statistics import median

    from results import machine_line, write_section

    arms = {"before": args.before, "after": ROOT} if args.before else {"after": ROOT}
    rates = {name: [] for name in arms}
    for _ in range(args.rounds):  # alternating: a slow spell of the machine hits both
        for name, path in arms.items():
            rates[name].append(run(path, args.steps, False, args.workers)["tokens_per_s"])
    profiles = {name: run(path, 3, True, args.workers)["profile"] for name, path in arms.items()}
    def commit(path):
        done = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        return done.stdout.strip() or "not a git checkout"

    compared = ", ".join(f"{name}: {commit(path)}" for name, path in arms.items())
    lines = [f"The cpu recipe (2 x 128, vocabulary 4,000, 64 x 64 tokens per step, no dropout), {args.steps} timed "
             f"steps after 5 of warm-up, {args.rounds} alternating rounds (median), DataLoader workers "
             f"{args.workers} (the code that has them). Code ({compared}). {machine_line()}", "",
             "| code | tokens/s (median) | rounds |", "|---|---|---|"]
    for name in arms:
        lines.append(f"| {name} | {median(rates[name]):,.0f} | {', '.join(f'{r:,.0f}' for r in rates[name])} |")
    if "before" in rates:
        lines += ["", f"Ratio after / before: {median(rates['after']) / median(rates['before']):.3f}."]
    for name, table in profiles.items():
        lines += ["", f"One steady-state step, {name} (torch.profiler, sorted by self CPU time):", "", "```",
                  table.strip(), "```"]
    write_section(f"pretraining step on the cpu: before and after{' (DataLoader workers)' if args.workers else ''}",
                  "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
