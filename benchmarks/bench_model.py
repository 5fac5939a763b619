"""Model benchmark: forward + backward tokens/s of our RobertaForMaskedLM against transformers' (SDPA attention).

Same config, same weights, same batch (15% of tokens labelled, as in pretraining), alternating in one process; the
best of several rounds is kept. Ours runs twice: with its MLM head on the labelled positions only (the algorithmic
saving fairseq makes, and our default) and with the head on every position, the work transformers does (the
equal-work row, which measures the implementation alone). Peak memory is measured in a fresh subprocess per model (peak resident memory on
the CPU, peak allocated memory on CUDA). On a GPU it runs the mini and base presets in the precision the settings
module picks (bf16 or fp16 autocast).

With ``--activation-checkpointing`` both models recompute each layer in the backward pass (ours:
``set_activation_checkpointing``; transformers: ``gradient_checkpointing_enable``); the results go to their own
section, beside the one without it, to show the memory saved and the time added.

    python benchmarks/bench_model.py [--preset tiny] [--vocab-size 8000] [--batch 32] [--seq 128] [--device cpu]
                                     [--activation-checkpointing]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch
from results import dense_head_model, load_reference_weights, machine_line, write_section

from roberta_from_scratch.config import RobertaConfig
from roberta_from_scratch.weights import to_hf_state_dict
from roberta_from_scratch.model import RobertaForMaskedLM
from roberta_from_scratch.settings import pick_precision


MODELS = ("ours", "ours-dense", "transformers")


def build(preset: str, vocab_size: int, device: torch.device, which=MODELS,
          checkpointing: bool = False):
    import transformers

    torch.manual_seed(0)
    config = RobertaConfig.from_preset(preset, vocab_size=vocab_size, hidden_dropout_prob=0.0,
                                       attention_probs_dropout_prob=0.0)
    ours = RobertaForMaskedLM(config)
    models = {"ours": ours}
    if "ours-dense" in which:  # the same weights, the head on every position: transformers' work
        models["ours-dense"] = dense_head_model(config)
        models["ours-dense"].load_state_dict(ours.state_dict())
    if "transformers" in which:
        theirs = transformers.RobertaForMaskedLM(transformers.RobertaConfig(**config.to_dict(),
                                                                            attn_implementation="sdpa"))
        load_reference_weights(theirs, to_hf_state_dict(ours))  # the tied decoder follows the embeddings (checked)
        models["transformers"] = theirs
    if checkpointing:
        ours.set_activation_checkpointing(True)
        if "ours-dense" in models:
            models["ours-dense"].set_activation_checkpointing(True)
        if "transformers" in models:
            models["transformers"].gradient_checkpointing_enable({"use_reentrant": False})
    return {name: models[name].to(device).train() for name in which}


def _rss_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process from /proc, in MiB (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def batch(vocab_size: int, size: int, seq: int, device: torch.device):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, vocab_size, (size, seq), generator=g)
    ids[:, 0] = 0
    labels = torch.where(torch.rand(size, seq, generator=g) < 0.15, ids, torch.full_like(ids, -100))
    return ids.to(device), torch.ones_like(ids).to(device), labels.to(device)


def step_fn(model, ids, mask, labels, precision):
    def step():
        model.zero_grad(set_to_none=True)
        with precision.autocast():
            loss = model(ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        if ids.is_cuda:
            torch.cuda.synchronize()
    return step


def worker(args) -> None:
    """Memory of one model's training steps, measured alone in a fresh process: the peak during the steps minus
    what the process held before them (weights, optimizer-free), i.e. activations, gradients and workspace."""
    device = torch.device(args.device)
    model = build(args.preset, args.vocab_size, device, which=(args.worker,),
                  checkpointing=args.activation_checkpointing)[args.worker]
    ids, mask, labels = batch(args.vocab_size, args.batch, args.seq, device)
    step = step_fn(model, ids, mask, labels, pick_precision(device))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    else:
        before = _rss_mib("VmRSS")
    for _ in range(3):
        step()
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else _rss_mib("VmHWM")
    print(json.dumps({"peak_mib": peak - before}))


def measure(args) -> dict:
    device = torch.device(args.device)
    precision = pick_precision(device)
    models = build(args.preset, args.vocab_size, device, checkpointing=args.activation_checkpointing)
    ids, mask, labels = batch(args.vocab_size, args.batch, args.seq, device)
    with torch.no_grad():  # same weights and the same loss: the comparison is fair
        reference = models["transformers"](ids, attention_mask=mask, labels=labels).loss
        for name in ("ours", "ours-dense"):
            torch.testing.assert_close(models[name](ids, mask, labels=labels).loss, reference, rtol=1e-4, atol=1e-4)
    steps = {name: step_fn(model, ids, mask, labels, precision) for name, model in models.items()}
    for step in steps.values():  # warm up
        step()
    best = {name: float("inf") for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():  # alternate
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            best[name] = min(best[name], (time.perf_counter() - start) / args.steps)
    tokens = args.batch * args.seq
    peaks = {}
    for name in MODELS:
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--worker", name], capture_output=True,
                             text=True, check=True)
        peaks[name] = json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]
    return {"tokens_per_s": {k: tokens / v for k, v in best.items()}, "peak_mib": peaks, "precision": precision.name}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--activation-checkpointing", action="store_true")
    parser.add_argument("--worker", choices=MODELS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    import transformers

    r = measure(args)
    speed, peak = r["tokens_per_s"], r["peak_mib"]
    memory = "memory of the training steps (peak minus before)"
    table = "\n".join([
        "| model | tokens/s (forward + backward) | " + memory + " |",
        "|---|---|---|",
        f"| ours, RobertaForMaskedLM (MLM head on the labelled positions) | {speed['ours']:,.0f} | "
        f"{peak['ours']:,.0f} MiB |",
        f"| ours, MLM head on every position (equal work) | {speed['ours-dense']:,.0f} | {peak['ours-dense']:,.0f} MiB |",
        f"| transformers RobertaForMaskedLM (SDPA; MLM head on every position) | {speed['transformers']:,.0f} | "
        f"{peak['transformers']:,.0f} MiB |",
        f"| ratio ours / transformers, equal work (the implementation) | {speed['ours-dense'] / speed['transformers']:.2f}x"
        f" | {peak['ours-dense'] / peak['transformers']:.2f}x |",
        f"| ratio ours / transformers, head on the labelled positions (the algorithm and the implementation) | "
        f"{speed['ours'] / speed['transformers']:.2f}x | {peak['ours'] / peak['transformers']:.2f}x |",
        "",
        f"Preset {args.preset}, vocabulary {args.vocab_size:,}, batch {args.batch} x {args.seq} tokens, 15% of tokens "
        f"labelled, {args.device} {r['precision']}, training mode without dropout, best of {args.rounds} alternating "
        f"rounds of {args.steps} steps; the three compute the same loss (checked). The equal-work row runs our "
        "model's head on every position, as transformers does; the first row runs it only on the labelled ones "
        f"(fairseq's masked_tokens), an algorithmic saving.{' All with activation checkpointing.' * args.activation_checkpointing} "
        f"{machine_line(transformers=transformers.__version__)}",
    ])
    ckpt = ", activation checkpointing" if args.activation_checkpointing else ""
    write_section(f"model: {args.preset} preset, {args.device}{ckpt}", table)
    print(table)


if __name__ == "__main__":
    main()
