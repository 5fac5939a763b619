"""Training-step throughput of our loop beside transformers': tokens/s, MFU and peak memory per preset and length.

Three rows per shape, each a full optimizer step (AdamW, clipping, the precision the settings module picks) on the
same random packed blocks, 15% of the positions masked; warm-up steps are not timed and no step waits for the
device (losses stay on it):
  - ours: the package's Trainer, its MLM head on the masked positions only (fairseq's saving, our default);
  - ours, dense head: the Trainer with the head on every position, transformers' work (the equal-work row);
  - transformers: its RobertaForMaskedLM (SDPA) in a loop of the same optimizer, schedule and clipping.
MFU = FLOPs per second / the device's peak (training.PEAK_TFLOPS), the FLOPs as the course counts them (notebook
08, section 1): tokens x (6N + 12 L H Q T) + (positions the head runs on) x 6 (C^2 + V C), V the real vocabulary.
``--pad-vocab 1`` turns off the padding of the vocabulary to a multiple of 64 (TrainingConfig.pad_vocab_multiple).
Meant for a GPU; on a CPU it still reports tokens/s.

    python benchmarks/bench_training.py --device cuda --presets mini base --seq-lens 128 512 [--compile]
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
from results import dense_head_model, machine_line, write_section

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


def timed(step, device: torch.device, steps: int, warmup: int) -> float:
    """Seconds per call of ``step`` after ``warmup`` calls, the device waited for only at the two ends."""
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def measure(preset: str, seq_len: int, batch: int, vocab: int, device: str, compile_: bool, steps: int,
            which: str = "ours", pad_vocab: int = 64, profile: bool = False) -> dict:
    """One row: ``which`` is ours, ours-dense or transformers; ``profile``: a torch.profiler table of one more
    steady-state step (CPU and, on a GPU, CUDA time per operator)."""
    torch.manual_seed(0)
    config = RobertaConfig.from_preset(preset, vocab_size=vocab, max_position_embeddings=max(514, seq_len + 2))
    model = dense_head_model(config) if which == "ours-dense" else RobertaForMaskedLM(config)
    cfg = TrainingConfig(max_steps=steps + 10, batch_size=batch, lr=1e-4, progress=False, device=device,
                         compile=compile_, pad_vocab_multiple=pad_vocab)
    collator = DataCollatorForMLM(FakeTokenizer(vocab))
    trainer = Trainer(model, blocks_for(vocab, seq_len, batch * 4), collator, cfg)
    warmup = 8 if compile_ else 5
    if which == "transformers":
        step = transformers_step(config, trainer, compile_)
    else:
        step = trainer.step_on_device
    seconds = timed(step, trainer.device, steps, warmup)
    tokens_per_s = batch * seq_len / seconds
    head_positions = trainer.last_targets if which == "ours" else trainer.last_tokens  # dense: every position
    flops = trainer.last_tokens * trainer.flops_per_token + head_positions * trainer.head_flops
    mfu = flops / seconds / trainer.peak if trainer.peak else None
    memory = torch.cuda.max_memory_allocated() / 2**30 if trainer.device.type == "cuda" else None
    table = profile_step(step, trainer.device) if profile else None
    return {"profile": table, "preset": preset, "seq": seq_len, "batch": batch, "tokens_per_s": tokens_per_s, "mfu": mfu,
            "memory_gib": memory, "precision": trainer.precision.name, "params": trainer.model.num_parameters(),
            "compiled": trainer.compiled if which != "transformers" else compile_}


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
    """transformers' RobertaForMaskedLM with our weights, stepped like the Trainer steps ours: the same batches,
    autocast, clipping, AdamW and schedule; the Trainer's own model is moved off the device to free its memory."""
    import transformers

    from roberta_from_scratch.hub import to_hf_state_dict
    from roberta_from_scratch.optim import make_optimizer, make_scheduler

    theirs = transformers.RobertaForMaskedLM(transformers.RobertaConfig(**config.to_dict(),
                                                                        attn_implementation="sdpa"))
    theirs.load_state_dict(to_hf_state_dict(trainer.model), strict=False)  # the tied decoder follows
    trainer.model.cpu()
    device, precision, cfg = trainer.device, trainer.precision, trainer.cfg
    theirs = theirs.to(device).train()
    forward = torch.compile(theirs) if compile_ else theirs
    optimizer = make_optimizer(theirs, cfg, device)
    scheduler = make_scheduler(optimizer, cfg)
    batches = [trainer.step_data[i] for i in range(4)]
    turn = itertools.count()

    def step():
        batch = {k: v.to(device, non_blocking=True) for k, v in batches[next(turn) % 4].items()}
        with precision.autocast():
            loss = forward(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), cfg.max_grad_norm)
        optimizer.step()
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
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--pad-vocab", type=int, default=64, help="vocabulary rows rounded up to a multiple of this "
                        "(1: no padding)")
    parser.add_argument("--models", nargs="+", choices=list(LABELS), default=list(LABELS))
    parser.add_argument("--profile", action="store_true", help="also profile one step of ours, sparse head, per shape")
    args = parser.parse_args()
    profiles = []
    rows = ["| preset | parameters | sequence | batch | model | precision | tokens/s | MFU | peak memory |",
            "|---|---|---|---|---|---|---|---|---|"]
    for preset in args.presets:
        for seq in args.seq_lens:
            speeds = {}
            for which in args.models:
                r = measure(preset, seq, args.tokens_per_batch // seq, args.vocab_size, args.device, args.compile,
                            args.steps, which, args.pad_vocab, profile=args.profile and which == "ours")
                speeds[which] = r["tokens_per_s"]
                if r["profile"]:
                    profiles += ["", f"One steady-state step of ours, {preset}, sequence {seq}, batch {r['batch']}, "
                                 f"{r['precision']}{' compiled' if r['compiled'] else ''} (torch.profiler):", "",
                                 "```", r["profile"].strip(), "```"]
                mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
                memory = f"{r['memory_gib']:.1f} GiB" if r["memory_gib"] is not None else "n/a"
                label = LABELS[which] + (" (compiled)" if r["compiled"] else "")
                rows.append(f"| {preset} | {r['params'] / 1e6:.1f} M | {seq} | {r['batch']} | {label} | "
                            f"{r['precision']} | {r['tokens_per_s']:,.0f} | {mfu} | {memory} |")
                print(rows[-1], flush=True)
            if "transformers" in speeds:
                for which in ("ours", "ours-dense"):
                    if which in speeds:
                        rows.append(f"| {preset} | | {seq} | | ratio {LABELS[which]} / transformers | | "
                                    f"{speeds[which] / speeds['transformers']:.2f}x | | |")
    rows += ["", f"Full training steps (forward, backward, clipping, fused AdamW on CUDA, the schedule), dropout "
             f"0.1, random blocks, vocabulary {args.vocab_size:,} ({padding_note(args.vocab_size, args.pad_vocab)}), 15% masked, "
             f"{args.steps} timed steps after warm-up, no step waiting for the device"
             f"{', torch.compile' if args.compile else ''}. MFU counts the layers on every token and the MLM head "
             "on the positions it runs on (the masked ones for ours, every one for the other two rows), over the "
             f"real vocabulary. {machine_line()}"]
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
