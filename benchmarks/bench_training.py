"""Training-step throughput of our loop: tokens/s, MFU and peak memory per preset and sequence length.

Runs the package's Trainer (AdamW, schedule, clipping, the precision the settings module picks) on random packed
blocks, so it needs no corpus; warm-up steps are not timed. MFU = tokens/s x (6N + 12 L H Q T) / the device's
peak (training.PEAK_TFLOPS). Meant for a GPU; on a CPU it still reports tokens/s.

    python benchmarks/bench_training.py --device cuda --presets mini base --seq-lens 128 512 [--compile]
"""

from __future__ import annotations

import argparse
import time

import torch
from results import machine_line, write_section

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


def measure(preset: str, seq_len: int, batch: int, vocab: int, device: str, compile_: bool, steps: int) -> dict:
    torch.manual_seed(0)
    config = RobertaConfig.from_preset(preset, vocab_size=vocab, max_position_embeddings=max(514, seq_len + 2))
    g = torch.Generator().manual_seed(0)
    blocks = [[0] + torch.randint(5, vocab, (seq_len - 2,), generator=g).tolist() + [2] for _ in range(batch * 4)]
    trainer = Trainer(RobertaForMaskedLM(config), blocks, DataCollatorForMLM(FakeTokenizer(vocab)),
                      TrainingConfig(max_steps=steps + 10, batch_size=batch, lr=1e-4, progress=False, device=device,
                                     compile=compile_))
    for _ in range(5 if not compile_ else 8):  # warm-up (and compilation)
        trainer.train_step()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    tokens_per_s = batch * seq_len / seconds
    mfu = tokens_per_s * trainer.flops_per_token / trainer.peak if trainer.peak else None
    memory = torch.cuda.max_memory_allocated() / 2**30 if trainer.device.type == "cuda" else None
    return {"preset": preset, "seq": seq_len, "batch": batch, "tokens_per_s": tokens_per_s, "mfu": mfu,
            "memory_gib": memory, "precision": trainer.precision.name, "params": trainer.model.num_parameters()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--presets", nargs="+", default=["mini", "base"])
    parser.add_argument("--seq-lens", nargs="+", type=int, default=[128, 512])
    parser.add_argument("--tokens-per-batch", type=int, default=32768)
    parser.add_argument("--vocab-size", type=int, default=50265)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    rows = ["| preset | parameters | sequence | batch | precision | tokens/s | MFU | peak memory |",
            "|---|---|---|---|---|---|---|---|"]
    for preset in args.presets:
        for seq in args.seq_lens:
            r = measure(preset, seq, args.tokens_per_batch // seq, args.vocab_size, args.device, args.compile,
                        args.steps)
            mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
            memory = f"{r['memory_gib']:.1f} GiB" if r["memory_gib"] is not None else "n/a"
            rows.append(f"| {preset} | {r['params'] / 1e6:.1f} M | {seq} | {r['batch']} | {r['precision']} | "
                        f"{r['tokens_per_s']:,.0f} | {mfu} | {memory} |")
            print(rows[-1], flush=True)
    rows += ["", f"Our Trainer, full training steps (forward, backward, clipping, fused AdamW on CUDA), random blocks, "
             f"vocabulary {args.vocab_size:,}, 15% masked, {args.steps} timed steps after warm-up"
             f"{', torch.compile' if args.compile else ''}. {machine_line()}"]
    table = "\n".join(rows)
    write_section(f"training throughput: {args.device}{' compiled' if args.compile else ''}", table)
    print(table)


if __name__ == "__main__":
    main()
