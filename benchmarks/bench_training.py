"""Training-step throughput of our loop beside transformers': tokens/s, MFU and peak memory per preset and length.

Three rows per shape, each a full optimizer step (AdamW, clipping, the precision the settings module picks) on the
same random packed blocks, 15% of the positions masked; warm-up steps are not timed and no step waits for the
device (losses stay on it):
  - ours: the package's Trainer, its MLM head on the masked positions only (fairseq's saving, our default);
  - ours, dense head: the Trainer with the head on every position, transformers' work (the equal-work row);
  - transformers: its RobertaForMaskedLM (SDPA) in a loop of the same optimizer, schedule, clipping and precision
    machinery (autocast, and under fp16 a GradScaler driving a fused AdamW, as the Trainer does).
The same host work on both sides: every step of every row builds and masks a fresh batch with the same collator
(the Trainer's ``step_data[step]``, a function of the step; transformers' loop calls it too, so both see the same
batches) and drops the attention mask of full blocks. The rows alternate: each of ``--rounds`` rounds times
``--steps`` steps of every row in turn; the table gives the median round and the range, the ratios the median of
the per-round ratios (rows of the same round, measured one after the other).
MFU = FLOPs per second / the device's peak (training.PEAK_TFLOPS), the FLOPs as the course counts them (notebook
08, section 1): tokens x (6N + 12 L H Q T) + (positions the head runs on) x 6 (C^2 + V C), V the real vocabulary.
``--pad-vocab 1`` turns off the padding of the vocabulary to a multiple of 64 (TrainingConfig.pad_vocab_multiple).
Meant for a GPU; on a CPU it still reports tokens/s.

    python benchmarks/bench_training.py --device cuda --presets mini base --seq-lens 128 512 [--compile] [--rounds 3]
    python benchmarks/bench_training.py --device cpu --presets tiny --seq-lens 128 --tokens-per-batch 4096 \
        --vocab-size 8000 --steps 10 --rounds 5 --profile     # the cpu section of results.md
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch
from results import dense_head_model, load_reference_weights, machine_line, write_section

from roberta_from_scratch.config import RobertaConfig
from roberta_from_scratch.masking import DataCollatorForMLM
from roberta_from_scratch.model import RobertaForMaskedLM
from roberta_from_scratch.training import Trainer, TrainingConfig


class FakeTokenizer:
    """Just what the collator needs: a vocabulary size and the special ids."""

    def __init__(self, vocab_size: int):
        self.vocab_size, self.mask_token_id, self.pad_token_id = vocab_size, 4, 1
        self.special_ids = {0, 1, 2, 3, 4}

    def __len__(self):
        return self.vocab_size


def blocks_for(vocab: int, seq_len: int, count: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(0)
    return [[0] + torch.randint(5, vocab, (seq_len - 2,), generator=g).tolist() + [2] for _ in range(count)]


def timed(row: dict, steps: int) -> float:
    """Seconds per step of ``row`` over ``steps`` steps, the device waited for only at the two ends. On CUDA the
    row's peak memory is kept too: the peak during these steps minus what was allocated before them (which holds
    every row's weights and optimizer state: all stay on the device while the rows alternate), plus the row's own
    resident memory (``build``), i.e. the peak this row would reach alone, allocator cache aside."""
    cuda = row["device"].type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    start = time.perf_counter()
    for _ in range(steps):
        row["step"]()
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    if cuda:
        peak = (torch.cuda.max_memory_allocated() - before + row["resident"]) / 2**30
        row["memory_gib"] = max(row.get("memory_gib", 0.0), peak)
    return seconds


def build(preset: str, seq_len: int, batch: int, vocab: int, device: str, compile_: bool, max_steps: int,
          which: str = "ours", pad_vocab: int = 64) -> dict:
    """One row, ready to time: ``which`` is ours, ours-dense or transformers; its step function (warmed up, so
    compiled and with its optimizer state), its Trainer (which counts tokens and FLOPs) and, on CUDA, the memory it
    holds between steps (weights and optimizer state: ``resident``)."""
    torch.manual_seed(0)
    cuda = torch.device(device).type == "cuda"
    allocated = torch.cuda.memory_allocated() if cuda else 0
    config = RobertaConfig.from_preset(preset, vocab_size=vocab, max_position_embeddings=max(514, seq_len + 2))
    model = dense_head_model(config) if which == "ours-dense" else RobertaForMaskedLM(config)
    cfg = TrainingConfig(max_steps=max_steps, batch_size=batch, lr=1e-4, progress=False, device=device,
                         compile=compile_, pad_vocab_multiple=pad_vocab)
    collator = DataCollatorForMLM(FakeTokenizer(vocab))
    trainer = Trainer(model, blocks_for(vocab, seq_len, batch * 4), collator, cfg)
    if which == "transformers":
        step = transformers_step(config, trainer, compile_)
    else:
        step = trainer.step_on_device
    for _ in range(8 if compile_ else 5):  # warm-up, not timed
        step()
    if cuda:
        torch.cuda.synchronize()
    return {"which": which, "trainer": trainer, "step": step, "device": trainer.device, "tokens": batch * seq_len,
            "resident": torch.cuda.memory_allocated() - allocated if cuda else 0,
            "compiled": trainer.compiled if which != "transformers" else compile_}


def summary(row: dict, seconds: float) -> dict:
    """The row's tokens/s and MFU at ``seconds`` per step."""
    trainer = row["trainer"]
    head_positions = trainer.last_targets if row["which"] == "ours" else trainer.last_tokens  # dense: every one
    flops = trainer.last_tokens * trainer.flops_per_token + head_positions * trainer.head_flops
    return {"tokens_per_s": row["tokens"] / seconds, "mfu": flops / seconds / trainer.peak if trainer.peak else None}


def profile_step(step, device: torch.device) -> str:
    """The operators of one steady-state step by their own time: on a GPU sorted by device time, which is where a
    step that never waits for the host spends it; on a CPU by CPU time."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        step()
        if cuda:
            torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total",
                                     row_limit=15, max_name_column_width=48)


def transformers_step(config, trainer, compile_: bool):
    """transformers' RobertaForMaskedLM with our weights, stepped like the Trainer steps ours (``Trainer.host_batch``,
    ``_forward_backward`` and ``apply_gradients``): step ``n`` builds and masks its batch afresh with the Trainer's
    collator (``step_data[n]``, the batch the Trainer gives its own step ``n``), drops the attention mask of full
    blocks, copies to the device as the Trainer does, then autocast, the GradScaler (enabled under fp16 only),
    clipping of the unscaled gradients, the same AdamW (fused under fp16 or on CUDA) and schedule. Left out: the
    Trainer's count of skipped fp16 steps (two tiny device operations). The Trainer's own model is moved off the
    device to free its memory."""
    import transformers

    from roberta_from_scratch.weights import to_hf_state_dict
    from roberta_from_scratch.optim import make_optimizer, make_scheduler

    theirs = transformers.RobertaForMaskedLM(transformers.RobertaConfig(**config.to_dict(),
                                                                        attn_implementation="sdpa"))
    load_reference_weights(theirs, to_hf_state_dict(trainer.model))  # the tied decoder follows (checked)
    trainer.model.cpu()
    device, precision, cfg = trainer.device, trainer.precision, trainer.cfg
    theirs = theirs.to(device).train()
    forward = torch.compile(theirs) if compile_ else theirs
    optimizer = make_optimizer(theirs, cfg, device, grad_scaler=precision.use_grad_scaler)
    scheduler = make_scheduler(optimizer, cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.use_grad_scaler)
    turn = itertools.count()

    def step():
        batch = trainer.step_data[next(turn)]  # gathered and masked now, as the Trainer's step does
        if bool(batch["attention_mask"].all()):  # full packed blocks: no mask, as the Trainer passes ours
            batch["attention_mask"] = None
        batch = {k: trainer._to_device(v) for k, v in batch.items() if v is not None}
        with precision.autocast():
            loss = forward(**batch).loss
        scaler.scale(loss).backward()
        if cfg.max_grad_norm:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(theirs.parameters(), cfg.max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        return loss.detach()

    trainer.host_batch()  # last_tokens and last_flops of one batch, for the MFU
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--presets", nargs="+", default=["mini", "base"])
    parser.add_argument("--seq-lens", nargs="+", type=int, default=[128, 512])
    parser.add_argument("--tokens-per-batch", type=int, default=32768)
    parser.add_argument("--vocab-size", type=int, default=50265)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per row in each round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds, each timing every row once")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--pad-vocab", type=int, default=64, help="vocabulary rows rounded up to a multiple of this "
                        "(1: no padding)")
    parser.add_argument("--models", nargs="+", choices=list(LABELS), default=list(LABELS))
    parser.add_argument("--profile", action="store_true", help="also profile one step of ours, sparse head, per shape")
    args = parser.parse_args()
    profiles = []
    rows = ["| preset | parameters | sequence | batch | model | precision | tokens/s (median) | range over rounds | "
            "MFU | peak memory |", "|---|---|---|---|---|---|---|---|---|---|"]
    max_steps = 10 + (8 + args.rounds * args.steps + 1)  # warm-up, the timed rounds, a profiled step; 10 to spare
    for preset in args.presets:
        for seq in args.seq_lens:
            batch = args.tokens_per_batch // seq
            built = [build(preset, seq, batch, args.vocab_size, args.device, args.compile, max_steps, which,
                           args.pad_vocab) for which in args.models]
            seconds = {row["which"]: [] for row in built}
            for _ in range(args.rounds):  # alternate: each round times every row once, in turn
                for row in built:
                    seconds[row["which"]].append(timed(row, args.steps))
            speeds = {}
            for row in built:
                which, trainer = row["which"], row["trainer"]
                rounds = [summary(row, s)["tokens_per_s"] for s in seconds[which]]
                speeds[which] = rounds
                r = summary(row, statistics.median(seconds[which]))
                if args.profile and which == "ours":
                    profiles += ["", f"One steady-state step of ours, {preset}, sequence {seq}, batch {batch}, "
                                 f"{trainer.precision.name}{' compiled' if row['compiled'] else ''} "
                                 "(torch.profiler):", "", "```", profile_step(row["step"], row["device"]).strip(),
                                 "```"]
                mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
                memory = f"{row['memory_gib']:.1f} GiB" if "memory_gib" in row else "n/a"
                label = LABELS[which] + (" (compiled)" if row["compiled"] else "")
                rows.append(f"| {preset} | {trainer.model.num_parameters() / 1e6:.1f} M | {seq} | {batch} | {label} | "
                            f"{trainer.precision.name} | {r['tokens_per_s']:,.0f} | {min(rounds):,.0f} - "
                            f"{max(rounds):,.0f} | {mfu} | {memory} |")
                print(rows[-1], flush=True)
            if "transformers" in speeds:
                for which in ("ours", "ours-dense"):
                    if which in speeds:  # the ratio of each round's two rows, measured one after the other
                        ratios = [a / b for a, b in zip(speeds[which], speeds["transformers"])]
                        rows.append(f"| {preset} | | {seq} | | ratio {LABELS[which]} / transformers | | "
                                    f"{statistics.median(ratios):.2f}x | {min(ratios):.2f}x - {max(ratios):.2f}x "
                                    "| | |")
            del built, row, trainer  # free this shape's models before the next one
            if torch.device(args.device).type == "cuda":
                torch.cuda.empty_cache()
    rows += ["", f"Full training steps (forward, backward, clipping, fused AdamW on CUDA or under fp16 with the "
             f"GradScaler, the schedule), dropout 0.1, random blocks, vocabulary {args.vocab_size:,} "
             f"({padding_note(args.vocab_size, args.pad_vocab)}), 15% masked, no step waiting for the device"
             f"{', torch.compile' if args.compile else ''}. Every row builds and masks a fresh batch per step with "
             "the same collator (the same batches for all rows) and drops the attention mask of full blocks; "
             f"transformers' loop runs the Trainer's precision machinery (autocast; GradScaler under fp16). The rows "
             f"alternate: {args.rounds} rounds, each timing {args.steps} steps of every row in turn, after warm-up; "
             "tokens/s is the median round, the ratios the median of the per-round ratios. MFU counts the layers on "
             "every token and the MLM head on the positions it runs on (the masked ones for ours, every one for the "
             "other two rows), over the real vocabulary. Peak memory (CUDA): the peak during a row's steps minus "
             f"what was allocated before them, plus the row's own weights and optimizer state. {machine_line()}"]
    table = "\n".join(rows + profiles)
    write_section(f"training throughput: {args.device}{' compiled' if args.compile else ''}"
                  f"{'' if args.pad_vocab > 1 else ', vocabulary not padded'}", table)
    print(table)


def padding_note(vocab: int, multiple: int) -> str:
    rows = -(-vocab // multiple) * multiple
    if multiple == 1:
        return "not padded"
    return f"{rows:,} rows in ours, a multiple of {multiple}" if rows != vocab else f"a multiple of {multiple} already"


LABELS = {"ours": "ours, sparse head", "ours-dense": "ours, dense head (equal work)",
          "transformers": "transformers (SDPA)"}

if __name__ == "__main__":
    main()
