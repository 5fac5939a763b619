"""Every notebook's gpu-scale minutes and peak GPU memory on a Colab T4, estimated from the course's own counts.

ESTIMATES, NOT MEASUREMENTS: nothing here ran on a T4. Each notebook's GPU work at ``RFS_SCALE=gpu`` (without
``RFS_REHEARSAL``) is listed below as data, one row per loop, each citing the notebook cell it comes from. A row's
FLOPs are the course's count (``training.flops_per_token`` for the layers on every token, ``head_flops_per_target``
for the MLM head on the positions it predicts; a forward pass is a third of a training step), its time those FLOPs
at an assumed MFU of the T4's peak, and its memory the training state (16 bytes per parameter), the activations
(Korthikanti et al. 2022), the MLM logits and what earlier cells keep on the GPU. ASSUMPTIONS lists every assumption
with its source; the printed tables repeat them.

    python benchmarks/t4_estimates.py            # the per-notebook table and the assumptions (Markdown)
    python benchmarks/t4_estimates.py --rows     # and every row with its cell, FLOPs, minutes and memory
    python benchmarks/t4_estimates.py --write    # replace the section of benchmarks/results.md
    python benchmarks/t4_estimates.py --column   # the course map's gpu column, one line per notebook
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, replace
from functools import lru_cache

from roberta_from_scratch.config import RobertaConfig
from roberta_from_scratch.course.experiments import ABLATION, FINETUNING, MASKING, ablation_arms
from roberta_from_scratch.course.reference import REFERENCE_DIR
from roberta_from_scratch.settings import SCALES
from roberta_from_scratch.training import PEAK_TFLOPS, flops_per_token, head_flops_per_target

SECTION = "T4 estimates (gpu scale; estimates, not measurements)"
GIB = 2**30
SCALE = SCALES["gpu"]
RECIPE = SCALE.pretrain

# ----------------------------------------------------------------------------------------------- assumptions

# Peaks: NVIDIA's T4 datasheet, 65 TFLOP/s fp16 with tensor cores (the course's PEAK_TFLOPS["T4"]) and 8.1 TFLOP/s
# fp32 (no tensor cores for fp32 on Turing, no TF32). Autocast (the Trainer, finetune(), notebook 05's evaluate)
# runs at the fp16 peak; code without autocast (predict(), notebook 10's loops, notebook 08's timed loops) in fp32.
PEAK = {"fp16": PEAK_TFLOPS["T4"] * 1e12, "fp32": 8.1e12}
# ASSUMED model FLOP utilisation, (low, high), for these small models (hidden 512, 4 layers) on a T4: 25-35% of
# the fp16 peak; 30-50% of the fp32 peak, since CUDA-core fp32 matrix products reach a larger share of an 8x smaller
# peak. Neither is measured on a T4 (the course's only GPU rows are H100s: benchmarks/results.md).
MFU = {"fp16": (0.25, 0.35), "fp32": (0.30, 0.50)}
# ASSUMED floor per step: an eager step of a 4-layer model launches some 350 kernels (forward, backward, clipping,
# AdamW, the gradient scaler), about 8 ms of host time on Colab's CPU; a forward batch about 3 ms. A row takes at
# least (batches x floor); it binds only for the smallest batches (tagging).
FLOOR_S = {"train": 0.008, "forward": 0.003}
# The CPU rows (model work that notebooks do on the CPU even at the gpu scale): the course's measured cpu training
# throughput (benchmarks/results.md, "training throughput: cpu": tiny, 128 tokens, batch 32, vocabulary 8,000,
# 29,587 tokens/s on this project's 2-core x86_64, the median of 5 alternating rounds) in FLOP/s by the same count,
# and ASSUMED half of it on Colab, whose 2 vCPUs are one physical core.
CPU_MEASURED_TOKENS_PER_S = 29_587
# ASSUMED torch.compile cost per distinct compiled training graph (the Trainer compiles on CUDA by default): 0.5 to
# 1.5 minutes of Triton compilation on Colab's 2 vCPUs; a second model of the same shapes reuses the graph.
COMPILE_MIN = (0.5, 1.5)
CUDA_CONTEXT_GIB = 0.4  # the CUDA context and cuBLAS/cuDNN workspaces, before any tensor
STATE_BYTES_PER_PARAM = 16  # fp32 weights 4 + gradients 4 + Adam's two moments 8 (notebook 08, section 3)
FROZEN_BYTES_PER_PARAM = 4  # a frozen or inference-only parameter: its fp32 weight
GRADIENT_BYTES_PER_PARAM = 8  # a backward pass without an optimizer: fp32 weights and gradients
PREDICTED = 0.15  # the share of positions the MLM head predicts (the 15% masking of notebooks 04 and 05)


def cpu_flops_per_s() -> tuple[float, float]:
    """(slow, fast) FLOP/s of the CPU rows: half the course's measured cpu rate (Colab), and that rate."""
    tiny = RobertaConfig.from_preset("tiny", vocab_size=8000, max_position_embeddings=130)
    fast = CPU_MEASURED_TOKENS_PER_S * (flops_per_token(tiny, 128) + PREDICTED * head_flops_per_target(tiny))
    return fast / 2, fast


# ----------------------------------------------------------------------------------------------- the models

LABELS = {"topics": 7, "tags": 7, "span": 2}  # python-docs-topics' 7 topics; O + B/I of EXC, FUNC, MOD; start/end
SMALL = RECIPE.model_config(RECIPE.vocab_size)
REFERENCE = RobertaConfig.load(REFERENCE_DIR)  # notebook 05's gpu model: small preset, vocabulary 16,000, 128 tokens
CONFIGS = {
    "small": SMALL,
    "base-16k": RobertaConfig.from_preset("base", vocab_size=RECIPE.vocab_size,  # notebook 05, section 9's next size
                                          max_position_embeddings=RECIPE.seq_len + 2),
    "roberta-base": RobertaConfig.from_preset("base", vocab_size=50265, max_position_embeddings=514),
    # notebook 11, cell 9: the ladder's baseline (notebook 05's model) 12 layers deep, dropout off (layer_config)
    "deep-12": replace(SMALL, num_hidden_layers=12, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
    "reference": REFERENCE,  # the reference model notebook 07 looks at, at every scale (its shipped config.json)
}
HEADS = {"mlm": "RobertaForMaskedLM", "topics": "RobertaForSequenceClassification",
         "tags": "RobertaForTokenClassification", "span": "RobertaForQuestionAnswering", "encoder": "RobertaModel"}


@lru_cache(maxsize=None)
def parameters(model: str, head: str, trainable_layers: int | None = None) -> tuple[int, int]:
    """(all, trainable) parameters of ``CONFIGS[model]`` with ``head``, built on the meta device (no memory);
    ``trainable_layers``: only the top layers and the head train (finetuning.freeze), None: all."""
    import torch

    from roberta_from_scratch import model as models
    from roberta_from_scratch.finetuning import freeze

    config = CONFIGS[model]
    if head in LABELS:
        config = replace(config, num_labels=LABELS[head])
    with torch.device("meta"):
        net = getattr(models, HEADS[head])(config)
    total = net.num_parameters()
    trainable = total if trainable_layers is None else freeze(net, trainable_layers)
    return total, trainable


# ----------------------------------------------------------------------------------------------- the rows


@dataclass(frozen=True)
class Workload:
    """One loop of one notebook cell at the gpu scale. ``batches`` counts every batch of the row (steps of every
    arm, seed and grid point together); ``batch`` x ``seq_len`` is one batch (padded), ``targets`` the share of its
    positions the MLM head runs on (0.15 sparse, 1.0 on every position, 0 for a task head)."""

    notebook: str
    cell: int
    what: str
    model: str = "small"  # a key of CONFIGS, or "" for a row that gives flops and memory itself
    head: str = "mlm"  # a key of HEADS
    kind: str = "train"  # train | forward | probe (encoder frozen) | top1 (top layer and head train)
    batch: int = 0
    seq_len: int = 0
    batches: float = 0  # fractional where the last batch of a pass is partial (evaluations: examples / 64)
    targets: float = 0.0
    precision: str = "fp16"  # fp16: under autocast; fp32: no autocast
    device: str = "gpu"  # gpu, or cpu: model work the notebook does on the CPU at the gpu scale
    attention: str = "sdpa"  # sdpa (memory-efficient kernel: no T x T tensor kept) | explicit (output_attentions)
    resident_bytes: float = 0.0  # what earlier cells keep on the GPU meanwhile
    flops_given: float | None = None  # rows that are no model pass (a matrix product, an attention timing)
    graphs: int = 0  # new graphs torch.compile builds for this row (the Trainer compiles on CUDA; a model of the
    # same architecture and batch shape reuses a graph; finetune() and hand-written loops run eager)
    memory_given: float | None = None
    optimizer: bool = True  # False: gradients without an optimizer (8 bytes per parameter, not 16)


def flops(w: Workload) -> float:
    """The row's FLOPs: per batch, tokens x flops_per_token + predicted positions x head_flops_per_target for a
    training step; a third of that forward only; a frozen encoder runs forward only, its trainable top layers also
    backward (two thirds of their share)."""
    if w.flops_given is not None:
        return w.flops_given
    config = CONFIGS[w.model]
    tokens = w.batch * w.seq_len
    step = tokens * (flops_per_token(config, w.seq_len) + w.targets * head_flops_per_target(config))
    share = {"train": 1.0, "forward": 1 / 3, "probe": 1 / 3,
             "top1": 1 / 3 + 2 / 3 * 1 / config.num_hidden_layers}[w.kind]
    return w.batches * step * share


def activation_bytes(config: RobertaConfig, batch: int, seq_len: int, explicit: bool, precision: str) -> float:
    """Korthikanti et al. 2022 (arXiv 2205.05198, section 4.1): one layer saves s·b·h·(34 + 5·a·s/h) bytes for
    backward in 16-bit; 5·a·s/h is the T x T scores, softmax and dropout of attention, which SDPA's memory-efficient
    kernel (a T4's: no flash attention before compute capability 8.0) never keeps. Twice as many bytes in fp32."""
    s, b, h, a = seq_len, batch, config.hidden_size, config.num_attention_heads
    per_layer = s * b * h * (34 + (5 * a * s / h if explicit else 0))
    return per_layer * (2 if precision == "fp32" else 1)


def memory_bytes(w: Workload) -> float:
    """The row's peak GPU memory without the CUDA context: the training state (16 B per trainable parameter, 4 per
    frozen one), the activations saved for backward (all layers; the trainable ones only for a frozen encoder; one
    layer's working set for a forward pass, plus every layer's attention maps when they are returned), the MLM
    logits of the predicted positions in fp32 (targets x vocabulary x 4 B) and the resident tensors."""
    if w.memory_given is not None:
        return w.memory_given + w.resident_bytes
    config = CONFIGS[w.model]
    layers = config.num_hidden_layers
    trainable_layers = {"train": None, "forward": None, "probe": 0, "top1": 1}[w.kind]
    total, trainable = parameters(w.model, w.head, trainable_layers)
    one_layer = activation_bytes(config, w.batch, w.seq_len, w.attention == "explicit", w.precision)
    if w.kind == "forward":
        state = FROZEN_BYTES_PER_PARAM * total
        saved = one_layer
        if w.attention == "explicit":  # output_attentions: every layer's (batch, heads, T, T) weights, fp32
            saved += layers * w.batch * config.num_attention_heads * w.seq_len**2 * 4
    else:
        per_param = STATE_BYTES_PER_PARAM if w.optimizer else GRADIENT_BYTES_PER_PARAM
        state = per_param * trainable + FROZEN_BYTES_PER_PARAM * (total - trainable)
        saved = one_layer * (layers if trainable_layers is None else trainable_layers)
    logits = w.batch * w.seq_len * w.targets * config.vocab_size * 4 if w.head == "mlm" else 0.0
    return state + saved + logits + w.resident_bytes


def seconds(w: Workload) -> tuple[float, float]:
    """(fast, slow) seconds of the row: FLOPs at the high and the low MFU (GPU) or CPU rate, at least the floor."""
    if w.device == "cpu":
        slow, fast = cpu_flops_per_s()
        return flops(w) / fast, flops(w) / slow
    low, high = MFU[w.precision]
    floor = w.batches * FLOOR_S["forward" if w.kind == "forward" else "train"]
    return (max(flops(w) / (PEAK[w.precision] * high), floor), max(flops(w) / (PEAK[w.precision] * low), floor))


def state(model: str = "small", head: str = "mlm", per_param: int = STATE_BYTES_PER_PARAM) -> float:
    """Bytes a model kept by an earlier cell holds on the GPU: 16 per parameter with its AdamW state and gradients,
    8 for Adam's moments alone, 4 for its fp32 weights alone."""
    return per_param * parameters(model, head)[0]


# Sizes measured once at the gpu scale (RFS_SCALE=gpu's tokenizer of 16,000 tokens, texts cut at 128 tokens) by
# counting the data the notebooks load; padded widths are the mean longest example per batch (random batches for
# training, in order for evaluation), so a batch costs batch x width tokens.
TRAIN_BLOCKS = 2946  # pack_dataset(python-docs train, 128): 2,946 blocks (304 held out; evaluations take 256)
EVAL_BLOCKS = 256  # TrainingConfig.eval_blocks
TOPICS = {"train": 901, "validation": 113, "test": 113, "width": 128}  # 13% of the texts fill all 128 tokens
TAGS = {"train": 3051, "validation": 696, "test": 713, "width": 40}  # python-docs-entities: width 40.4 (32), 42 (64)
QA = {"train_windows": 495, "validation_windows": 94, "test_windows": 100, "width": 128}  # stride 16
RETRIEVAL = {"documents": 1023, "queries": 647, "doc_width": 69, "query_width": 26,  # sorted by length, batches of 64
             "pair_query_width": 56, "pair_doc_width": 128}  # training pairs: random batches of 64


def evaluations(steps: int, every: int) -> int:
    """Evaluations of a Trainer run: step 0, every ``every`` steps, and the last step."""
    return 1 + steps // every + (1 if steps % every else 0)


def _notebook_05() -> list[Workload]:
    live = MASKING["gpu"]["live"]  # experiments.live_settings at the gpu scale without a rehearsal: the table's
    eval_batches = math.ceil(EVAL_BLOCKS / RECIPE.batch_size)
    live_evals = evaluations(live.steps, max(1, live.steps // live.evaluations))
    arms = 2 * len(live.seeds)  # dynamic and static
    fresh = state()  # cell 18's model and its AdamW stay on the GPU to the end
    main_moments = state(per_param=8)  # the main run's AdamW moments stay there after cell 32 moves its model off
    short = (f" (MASKING['gpu']['live'] asks {live.blocks:,} blocks; the corpus packs {TRAIN_BLOCKS:,}: the run "
             "raises ValueError, the row counts the loop it asks)") if live.blocks > TRAIN_BLOCKS else ""
    b, s = RECIPE.batch_size, RECIPE.seq_len
    return [
        Workload("05", 9, "gradients of one batch of 16, whole and in 4 micro-batches (CPU, fp32 by design)",
                 batch=16, seq_len=s, batches=2, targets=PREDICTED, precision="fp32", device="cpu"),
        Workload("05", 16, "5 steps of 16 blocks by hand and with the Trainer (CPU, fp32 by design)", batch=16,
                 seq_len=s, batches=10, targets=PREDICTED, precision="fp32", device="cpu"),
        Workload("05", 18, "initial loss of 32 blocks, then one batch of 8 learned by heart in 150 steps (no "
                 "autocast: fp32)", batch=8, seq_len=s, batches=150 + 32 / 8 / 3, targets=PREDICTED,
                 precision="fp32"),  # the forward pass over 32 blocks counted as 4/3 of a step of 8
        Workload("05", 20, "seconds_per_step: 3 + 6 timed steps", batch=b, seq_len=s, batches=9, targets=PREDICTED,
                 resident_bytes=fresh, graphs=1),
        Workload("05", 21, f"pretraining, {RECIPE.steps:,} steps of {b} x {s}", batch=b, seq_len=s,
                 batches=RECIPE.steps, targets=PREDICTED, resident_bytes=fresh),
        Workload("05", 21, "its evaluations (256 held-out blocks)", kind="forward", batch=b, seq_len=s,
                 batches=evaluations(RECIPE.steps, RECIPE.eval_every) * eval_batches, targets=PREDICTED,
                 resident_bytes=fresh + state()),
        Workload("05", 34, f"static vs dynamic, live: {arms} arms x {live.steps:,} steps of {live.batch_size} x "
                 f"{s}{short}", batch=live.batch_size, seq_len=s, batches=arms * live.steps, targets=PREDICTED,
                 resident_bytes=fresh + main_moments, graphs=int(live.batch_size != b)),
        Workload("05", 34, "its evaluations", kind="forward", batch=live.batch_size, seq_len=s,
                 batches=arms * live_evals * math.ceil(EVAL_BLOCKS / live.batch_size), targets=PREDICTED,
                 resident_bytes=fresh + main_moments + state()),
        Workload("05", 37, "timing the small preset: 2 + 3 steps", batch=b, seq_len=s, batches=5, targets=PREDICTED,
                 resident_bytes=fresh + main_moments),
        Workload("05", 37, "timing the next preset, base (vocabulary 16,000): 2 + 3 steps", model="base-16k",
                 batch=b, seq_len=s, batches=5, targets=PREDICTED, resident_bytes=fresh + main_moments, graphs=1),
    ]


def _notebook_06() -> list[Workload]:
    live = FINETUNING["gpu"]["live"]  # no gpu-scale cache: every run is live
    steps = (TOPICS["train"] // live.batch_size) * live.epochs  # 28 steps per epoch
    val = TOPICS["validation"] / 64  # predict() batches of 64, the last one partial
    test = TOPICS["test"] / 64
    width = TOPICS["width"]
    # the label-efficiency runs: at least live.epochs epochs and live.min_steps steps (experiments.finetune_arm);
    # label_subset keeps 46 (5%) and 226 (25%) of the 901 examples: 1 and 7 steps per epoch
    subsets = {0.05: 46, 0.25: 226}
    curve_steps, curve_epochs = 0, 0
    for fraction in [f for f in live.fractions if f < 1]:
        per_epoch = max(1, subsets[fraction] // live.batch_size)
        epochs = max(live.epochs, math.ceil(live.min_steps / per_epoch))
        curve_steps, curve_epochs = curve_steps + epochs * per_epoch, curve_epochs + epochs
    kept = 3 * state(head="topics", per_param=4)  # pretrained, scratch and a frozen model stay on the GPU
    return [
        Workload("06", 7, f"full finetuning, pretrained and random weights: 2 x {steps} steps of 32 x {width}",
                 head="topics", batch=live.batch_size, seq_len=width, batches=2 * steps),
        Workload("06", 7, "validation after every epoch (predict, fp32)", head="topics", kind="forward", batch=64,
                 seq_len=width, batches=2 * live.epochs * val, precision="fp32"),
        Workload("06", 11, "test predictions (cells 11, 13)", head="topics", kind="forward", batch=64, seq_len=width,
                 batches=3 * test, precision="fp32"),
        Workload("06", 18, f"probes on <s> and on the mean (encoder frozen): 2 x {steps} steps", head="topics",
                 kind="probe", batch=live.batch_size, seq_len=width, batches=2 * steps, resident_bytes=kept),
        Workload("06", 18, f"top layer + head: {steps} steps", head="topics", kind="top1", batch=live.batch_size,
                 seq_len=width, batches=steps, resident_bytes=kept),
        Workload("06", 18, "their validation and test predictions", head="topics", kind="forward", batch=64,
                 seq_len=width, batches=3 * (live.epochs * val + test), precision="fp32"),
        Workload("06", 22, f"label efficiency, 5% and 25% x 2 arms: 2 x {curve_steps} steps", head="topics",
                 batch=live.batch_size, seq_len=width, batches=2 * curve_steps, resident_bytes=kept),
        Workload("06", 22, f"their validation after every epoch (2 x {curve_epochs}) and test", head="topics",
                 kind="forward", batch=64, seq_len=width, batches=2 * (curve_epochs * val + test), precision="fp32"),
    ]


def _notebook_07() -> list[Workload]:
    # the reference model at every scale (cell 3), 64 held-out blocks of its 64 tokens for the statistics (cell 19),
    # its 256 held-out blocks in batches of 64 for each evaluation (cells 3 and 37)
    blocks, width, heldout = 64, REFERENCE.max_tokens, 256
    base_docs, base_width = 32, 256
    small_weights = 2 * state(model="reference", per_param=4)  # the reference model and its random twin
    evaluation = math.ceil(heldout / 64)
    return [
        Workload("07", 3, f"its held-out accuracy: {heldout} blocks", model="reference", kind="forward", batch=64,
                 seq_len=width, batches=evaluation, targets=PREDICTED),
        Workload("07", 19, f"attention maps of {blocks} blocks, reference and random model (fp32, explicit "
                 "attention, logits at every position)", model="reference", kind="forward", batch=16, seq_len=width,
                 batches=2 * blocks // 16, targets=1.0, precision="fp32", attention="explicit",
                 resident_bytes=small_weights),
        Workload("07", 29, f"roberta-base's maps of {base_docs} texts of up to {base_width} tokens (online only)",
                 model="roberta-base", kind="forward", batch=16, seq_len=base_width, batches=base_docs // 16,
                 targets=1.0, precision="fp32", attention="explicit", resident_bytes=small_weights),
        Workload("07", 40, f"the norms of what each head hands on (Kobayashi et al.): {blocks} blocks, once",
                 model="reference", kind="forward", batch=blocks, seq_len=width, batches=1, targets=1.0,
                 precision="fp32", attention="explicit", resident_bytes=small_weights),
        Workload("07", 37, "head ablation: the intact model and 16 heads off, twice (the page's and the package's)",
                 model="reference", kind="forward", batch=64, seq_len=width, batches=33 * evaluation,
                 targets=PREDICTED, resident_bytes=small_weights),
    ]


def _notebook_08() -> list[Workload]:
    positions, hidden, vocab, padded = 2048, 768, 50265, 50304  # cell 8 at the gpu scale
    calls = 2 * (1 + 3 * 10)  # plain and padded: a warm-up, then 3 samples of 10 calls
    decoder_weights = 2 * (vocab + padded) * hidden * 2  # both fp16 matrices and their gradients
    cell8 = decoder_weights + positions * hidden * 2 * 2  # and h with its gradient
    model_with_adam = state()
    b, s = RECIPE.batch_size, RECIPE.seq_len
    return [
        Workload("08", 8, f"the decoder timed, plain and padded: {calls} calls of {positions:,} x {hidden} x "
                 f"{vocab:,}", model="", batches=calls, precision="fp16",
                 flops_given=calls * 6 * positions * hidden * vocab,
                 memory_given=cell8 + positions * padded * 4),
        Workload("08", 13, f"the {RECIPE.preset} model timed: 1 + 5 steps of {b} x {s}, fp32", batch=b, seq_len=s,
                 batches=6, targets=PREDICTED, precision="fp32", resident_bytes=cell8),
        Workload("08", 15, "the waiting and the no-wait loop: 2 x 20 steps, fp32", batch=b, seq_len=s, batches=40,
                 targets=PREDICTED, precision="fp32", resident_bytes=cell8 + model_with_adam),
        Workload("08", 15, "the package's Trainer: 20 steps", batch=b, seq_len=s, batches=20, targets=PREDICTED,
                 resident_bytes=cell8 + 2 * model_with_adam, graphs=1),
        Workload("08", 18, "one more step, then a pass with every position labelled (labels=ids), fp32", batch=b,
                 seq_len=s, batches=2, targets=1.0, precision="fp32", resident_bytes=cell8 + 2 * model_with_adam),
    ]


def _notebook_09() -> list[Workload]:
    seeds, runs = 3, 6  # RUNS["gpu"]: seeds 0, 1, 2 x pretrained and random
    tag_epochs, qa_epochs = 5, 5
    tag_steps = TAGS["train"] // 32 * tag_epochs
    qa_steps = QA["train_windows"] // 32 * qa_epochs
    tag_eval = (TAGS["validation"] * tag_epochs + TAGS["test"]) / 64  # batches of 64, the last one partial
    qa_eval = (QA["validation_windows"] * qa_epochs + QA["test_windows"]) / 64
    tagger = state(head="tags", per_param=4)  # cell 17 keeps seed 0's pretrained tagger
    return [
        Workload("09", 17, f"tagging: {seeds} seeds x 2 inits x {tag_steps} steps of 32 x {TAGS['width']}",
                 head="tags", batch=32, seq_len=TAGS["width"], batches=runs * tag_steps, resident_bytes=tagger),
        Workload("09", 17, "its validation F1 every epoch and test (fp32)", head="tags", kind="forward", batch=64,
                 seq_len=TAGS["width"] + 2, batches=runs * tag_eval + TAGS["test"] / 64,  # + cell 21
                 precision="fp32"),
        Workload("09", 32, f"question answering: {seeds} seeds x 2 inits x {qa_steps} steps of 32 x {QA['width']}",
                 head="span", batch=32, seq_len=QA["width"], batches=runs * qa_steps, resident_bytes=tagger),
        Workload("09", 32, "its validation EM/F1 every epoch and test (fp32)", head="span", kind="forward",
                 batch=64, seq_len=QA["width"], batches=runs * qa_eval, precision="fp32"),
    ]


def _notebook_10() -> list[Workload]:
    seeds, steps, batch = 3, 600, 64  # RUNS["gpu"]
    r = RETRIEVAL
    docs, queries = r["documents"] / 64, r["queries"] / 64  # batches of 64 sorted by length, the last partial
    # encoder, untrained, the search model (+ its gradients), and the other seeds' supervised models (cell 21 keeps
    # them for the chunked encoding)
    kept = (4 + seeds - 1) * state(head="encoder", per_param=4)
    pair_width = (r["pair_query_width"] + r["pair_doc_width"]) // 2  # 64 queries + 64 documents: 128 x 92 tokens
    return [
        Workload("10", 7, "encoding checked against the package: 4 x 200 documents (fp32)", head="encoder",
                 kind="forward", batch=64, seq_len=r["doc_width"], batches=4 * 200 / 64,
                 precision="fp32"),
        Workload("10", 9, "documents and queries, untrained and pretrained, mean and <s> pooling (cells 9, 12)",
                 head="encoder", kind="forward", batch=64, seq_len=round((docs * r["doc_width"] + queries *
                                                                          r["query_width"]) / (docs + queries)),
                 batches=4 * (docs + queries), precision="fp32"),
        Workload("10", 21, f"unsupervised SimCSE: {seeds} x {steps} steps of 2 x {batch} texts x "
                 f"{r['pair_doc_width']} (no autocast: fp32)", head="encoder", batch=2 * batch,
                 seq_len=r["pair_doc_width"], batches=seeds * steps, precision="fp32", resident_bytes=kept),
        Workload("10", 21, f"supervised pairs: {seeds} x {steps} steps of {batch} queries + {batch} documents "
                 "(fp32)", head="encoder", batch=2 * batch, seq_len=pair_width, batches=seeds * steps,
                 precision="fp32", resident_bytes=kept),
        Workload("10", 23, f"chunked encoding: queries and every chunk of every document, pretrained and {seeds} "
                 "supervised encoders (fp32; chunks counted as 2 per document, an upper bound)", head="encoder",
                 kind="forward", batch=64, seq_len=r["doc_width"], batches=(1 + seeds) * (2 * docs + queries),
                 precision="fp32", resident_bytes=kept),
        Workload("10", 21, "encoding queries and documents after each of the 6 runs, and the search box (cell 37)",
                 head="encoder", kind="forward", batch=64, seq_len=r["doc_width"],
                 batches=2 * seeds * (docs + queries) + docs, precision="fp32"),
    ]


def _notebook_11() -> list[Workload]:
    live = ABLATION["gpu"]["live"]  # experiments.live_settings at the gpu scale without a rehearsal: the table's
    arms = len(ablation_arms(live))  # RoBERTa, each change, each masking rate
    runs = (arms + 1) * len(live.seeds)  # and the best combination
    timing = (arms + 2) * (1 + live.timing_rounds * live.timing_steps)  # the arms, then the combination and RoBERTa
    evals = evaluations(live.baseline_steps, max(1, live.baseline_steps // live.evaluations))
    b, s = live.batch_size, RECIPE.seq_len
    deep = state("deep-12", per_param=8)  # cell 9's last 12-layer model and its gradients stay on the GPU
    small_grads = state(per_param=8)  # cell 22's model: weights and gradients, no optimizer
    return [
        Workload("11", 9, "gradient norms at initialisation: a 12-layer post-LN and pre-LN model, one forward and "
                 "backward pass of 32 x 128 each (fp32)", model="deep-12", batch=32, seq_len=s, batches=2,
                 targets=PREDICTED, precision="fp32", optimizer=False, resident_bytes=deep),
        Workload("11", 22, "sparse head timed: a check and 3 x 5 forward and backward passes of 64 x 128 (fp32)",
                 batch=64, seq_len=s, batches=15 + 1 / 3, targets=PREDICTED, precision="fp32", optimizer=False,
                 resident_bytes=deep),
        Workload("11", 22, "the same with the dense head (logits at every position)", batch=64, seq_len=s,
                 batches=15 + 1 / 3, targets=1.0, precision="fp32", optimizer=False, resident_bytes=deep),
        Workload("11", 26, f"throughputs side by side: {arms} arms at once, then 2 (1 + {live.timing_rounds} x "
                 f"{live.timing_steps} steps each)", batch=b, seq_len=s, batches=timing, targets=PREDICTED,
                 resident_bytes=deep + small_grads + (arms - 1) * state(),  # every arm's Trainer at once
                 graphs=1 + len(live.changes) + 1),  # RoBERTa's (the masking arms share it), each change's, the best
        # combination's
        Workload("11", 26, f"the ladder: {runs} runs, each the wall-clock of {live.baseline_steps} baseline steps of "
                 f"{b} x {s}", batch=b, seq_len=s, batches=runs * live.baseline_steps, targets=PREDICTED,
                 resident_bytes=deep + small_grads),
        Workload("11", 26, "their evaluations", kind="forward", batch=b, seq_len=s,
                 batches=runs * evals * math.ceil(EVAL_BLOCKS / b), targets=PREDICTED,
                 resident_bytes=deep + small_grads + state()),
    ]


def workloads() -> list[Workload]:
    """Every row, notebooks 00 to 11 in order (notebooks 01 and 04 do no model work on the GPU)."""
    return [
        Workload("00", 3, "a 256 x 512 by 512 x 128 product on the device", model="", batches=1, precision="fp32",
                 flops_given=2 * 256 * 512 * 128, memory_given=(256 * 512 + 512 * 128 + 256 * 128) * 4),
        Workload("02", 31, "attention timed at T = 64 ... 4,096 (batch 1, 12 heads of 64), explicit and SDPA",
                 model="", batches=2 * 7, precision="fp32",
                 flops_given=sum(4 * 12 * t * t * 64 * (2 * (5 if t <= 512 else 3) + 2)
                                 for t in (64, 128, 256, 512, 1024, 2048, 4096)),
                 memory_given=2 * 12 * 4096**2 * 4),  # the explicit path's scores and weights at T = 4,096
        Workload("03", 36, "roberta-base fills one <mask> (online only)", model="roberta-base", kind="forward",
                 batch=1, seq_len=10, batches=1, targets=1.0, precision="fp32"),
        Workload("04", 29, "one batch of the loader moved to the device", model="", batches=1, flops_given=0.0,
                 memory_given=RECIPE.batch_size * RECIPE.seq_len * 8 * 3),
        *_notebook_05(), *_notebook_06(), *_notebook_07(), *_notebook_08(), *_notebook_09(), *_notebook_10(),
        *_notebook_11(),
    ]


NOTEBOOKS = {  # number -> (title, minutes of CPU work at the gpu scale that no row counts)
    "00": ("Course tour", 0.1),  # the course map's cpu-scale time: the same CPU work at every scale
    "01": ("Byte-level BPE", 0.3),  # cpu-scale time; the gpu vocabulary (16,000) takes a few seconds more
    "02": ("Attention", 0.3),
    "03": ("The encoder", 0.4),
    "04": ("Packing and masking", 0.2),
    "05": ("Pretraining", 0.0),
    "06": ("Finetuning", 0.0),
    "07": ("Seeing attention", 0.1),  # head_statistics on the CPU: 64 blocks of 64 tokens per model, seconds
    "08": ("Scaling up", 0.8),  # cells 22-36 run on the CPU at every scale: its cpu-scale time, an upper bound
    "09": ("Tagging and question answering", 0.0),
    "10": ("Semantic search", 1.0),  # tokenizing each training batch: 8-20 ms x 3,600 steps (measured here)
    "11": ("Beyond RoBERTa", 0.0),
}
# A notebook opened alone (06, 09, 10) without notebook 05's model loads the reference model that ships with the
# package (course/reference.py) instead of pretraining one: seconds, no GPU work worth a row.


# ----------------------------------------------------------------------------------------------- the tables


@dataclass(frozen=True)
class Estimate:
    notebook: str
    title: str
    summary: str
    gpu_tflop: float
    cpu_tflop: float
    minutes: tuple[float, float]  # (fast: high MFU, fast CPU, quick compile; slow)
    peak_gib: float | None  # None: no GPU tensor at all
    parts: dict[str, tuple[float, float]]  # the minutes by source: GPU rows, CPU rows, compilation, other CPU work


def estimate(number: str, rows: list[Workload]) -> Estimate:
    title, host_minutes = NOTEBOOKS[number]
    mine = [w for w in rows if w.notebook == number]
    graphs = sum(w.graphs for w in mine)
    gpu = [w for w in mine if w.device == "gpu"]
    parts = {"GPU rows": tuple(sum(seconds(w)[i] for w in gpu) / 60 for i in (0, 1)),
             "CPU rows": tuple(sum(seconds(w)[i] for w in mine if w.device == "cpu") / 60 for i in (0, 1)),
             "torch.compile": (graphs * COMPILE_MIN[0], graphs * COMPILE_MIN[1]),
             "other CPU work": (host_minutes, host_minutes)}
    fast, slow = (sum(part[i] for part in parts.values()) for i in (0, 1))
    peak = CUDA_CONTEXT_GIB + max(memory_bytes(w) for w in gpu) / GIB if gpu else None
    heavy = sorted((w for w in mine if flops(w) > 0), key=flops, reverse=True)
    summary = "; ".join(w.what for w in heavy[:3]) or "CPU work only"
    if len(heavy) > 3:
        summary += f"; {len(heavy) - 3} smaller"
    return Estimate(number, title, summary, sum(map(flops, gpu)) / 1e12,
                    sum(flops(w) for w in mine if w.device == "cpu") / 1e12, (fast, slow), peak, parts)


def estimates() -> list[Estimate]:
    rows = workloads()
    return [estimate(number, rows) for number in NOTEBOOKS]


def _minutes(value: float) -> str:
    return "<0.1" if value < 0.1 else f"{value:.1f}" if value < 10 else f"{value:.0f}"


def column_text(e: Estimate) -> str:
    """The course map's gpu column for one notebook: minutes and peak memory, marked as a T4 estimate."""
    fast, slow = e.minutes
    if e.peak_gib is None or e.peak_gib - CUDA_CONTEXT_GIB < 0.05:  # nothing on the GPU beyond its context
        return f"est. {'<1' if slow < 1 else f'{_minutes(fast)}-{_minutes(slow)}'} (T4; CPU work only)"
    text = "est. <1 (T4)" if slow < 1 else f"est. {_minutes(fast)}-{_minutes(slow)} (T4)"
    return f"{text}, {e.peak_gib:.1f} GiB"


def compiled_graphs() -> dict[str, int]:
    rows = workloads()
    return {number: sum(w.graphs for w in rows if w.notebook == number) for number in NOTEBOOKS}


def assumptions() -> list[str]:
    slow, fast = cpu_flops_per_s()
    cells: dict[str, list[str]] = {}
    for w in workloads():
        if w.device == "cpu" and str(w.cell) not in cells.setdefault(w.notebook, []):
            cells[w.notebook].append(str(w.cell))
    cpu_cells = "; ".join(f"notebook {n} cell{'s' if len(c) > 1 else ''} {', '.join(c)}" for n, c in cells.items())
    fp32: dict[str, list[str]] = {}
    for w in workloads():
        if w.device == "gpu" and w.precision == "fp32" and w.flops_given is None \
                and str(w.cell) not in fp32.setdefault(w.notebook, []):
            fp32[w.notebook].append(str(w.cell))
    fp32_cells = "; ".join(f"notebook {n} cell{'s' if len(c) > 1 else ''} {', '.join(c)}" for n, c in fp32.items())
    return [
        f"Peak: {PEAK['fp16'] / 1e12:.0f} TFLOP/s fp16 with tensor cores, {PEAK['fp32'] / 1e12:.1f} TFLOP/s fp32 "
        "(NVIDIA's T4 datasheet; `PEAK_TFLOPS['T4']` in `roberta_from_scratch/training.py`). Rows under autocast "
        "(the Trainer, `finetune()`, the pretraining evaluations) count at the fp16 peak; rows without autocast "
        f"count at the fp32 peak: {fp32_cells}.",
        f"MFU (assumed, not measured): {MFU['fp16'][0]:.0%} to {MFU['fp16'][1]:.0%} of the fp16 peak, "
        f"{MFU['fp32'][0]:.0%} to {MFU['fp32'][1]:.0%} of the fp32 peak. The first minutes figure uses the high "
        "MFU, the second the low one.",
        "FLOPs: the course's count, `flops_per_token(config, seq_len)` (6N + 12·L·H·T) on every token of a padded "
        "batch plus `head_flops_per_target(config)` on each predicted position (15% sparse, every position for a "
        "dense head or logits without labels); a forward pass is a third; a frozen encoder runs forward only and "
        "its trainable top layer also backward. Task heads (7 classes, 2 span logits) are left out (< 0.1%).",
        f"Floor: a row takes at least {FLOOR_S['train'] * 1e3:.0f} ms per training step and "
        f"{FLOOR_S['forward'] * 1e3:.0f} ms per forward batch (assumed launch overhead of an eager small model).",
        f"torch.compile (the Trainer's default on CUDA): {COMPILE_MIN[0]} to {COMPILE_MIN[1]} minutes per distinct "
        "compiled graph (assumed; a model of the same architecture and batch shape reuses a graph: "
        + ", ".join(f"notebook {n}: {g}" for n, g in compiled_graphs().items() if g) + ").",
        f"CPU rows (model work that a notebook does on the CPU even at the gpu scale: {cpu_cells}): "
        f"{fast / 1e9:.0f} GFLOP/s, the course's measured cpu training rate ({CPU_MEASURED_TOKENS_PER_S:,} "
        f"tokens/s, tiny preset, benchmarks/results.md), down to half of it ({slow / 1e9:.0f} GFLOP/s) on Colab's "
        "2 vCPUs (assumed). Other CPU work: the course map's cpu-scale minutes where that work is the same at "
        "every scale (notebooks 00-04 and 08), measured here for notebook 07 (head statistics of 2 x 64 blocks of "
        "64 tokens, under a second each) and notebook 10 (tokenizing every training batch, 8-20 ms x 3,600 steps); data "
        "preparation, plots and Python metrics elsewhere are not counted (seconds).",
        f"Memory: {CUDA_CONTEXT_GIB} GiB CUDA context + the largest row: {STATE_BYTES_PER_PARAM} bytes per trained "
        f"parameter (fp32 weights 4, gradients 4, Adam moments 8; {FROZEN_BYTES_PER_PARAM} per frozen or "
        "inference-only one), activations by Korthikanti et al. 2022 (arXiv 2205.05198): s·b·h·(34 + 5·a·s/h) "
        "bytes per layer in 16-bit, twice that in fp32, without the 5·a·s/h term where SDPA's memory-efficient "
        "kernel runs (every training row: a T4 has no flash attention) and with it where the attention weights are "
        "materialised (notebook 07's output_attentions, notebook 02's explicit path); a forward pass keeps one "
        "layer's working set; the MLM logits of the predicted positions in fp32 (targets x vocabulary x 4 bytes); "
        "and what earlier cells keep on the GPU (models, Adam moments). Not counted: autocast's fp16 weight copies, "
        "cross-entropy's fp32 log-softmax and gradient beside the logits (up to twice the logits again, for a few "
        "milliseconds: it matters only where every position is predicted, notebook 07 and notebook 08 cell 18), "
        "the allocator's cache and fragmentation; nvidia-smi shows more.",
        f"Sizes at RFS_SCALE=gpu without RFS_REHEARSAL: the recipe ({RECIPE.preset}, vocabulary "
        f"{RECIPE.vocab_size:,}, {RECIPE.steps:,} steps of {RECIPE.batch_size} x {RECIPE.seq_len}), the "
        "experiments' gpu settings (MASKING, FINETUNING, ABLATION 'live'), each notebook's own per-scale "
        "constants, and the data as the gpu tokenizer cuts it (padded widths measured once: topics and QA 128, "
        "tagging 40, retrieval documents 69 and queries 26 per sorted batch). Notebooks run in order: notebook "
        "05's model is on disk for 06, 09 and 10 (notebook 07 looks at the reference model at every scale); no gpu-scale cached results exist, so notebook 06 runs live "
        "only.",
    ]


def markdown(rows_too: bool = False) -> str:
    lines = ["Estimates from the course's FLOP and memory counts, not measurements: no notebook has run on a T4. "
             "Each notebook's GPU work at `RFS_SCALE=gpu` is a row of data in `benchmarks/t4_estimates.py`, citing "
             "its cell.", "",
             "| notebook | workloads (largest first) | TFLOP GPU / CPU | minutes (T4, high / low MFU) "
             "| peak GPU memory (GiB) |", "|---|---|---|---|---|"]
    for e in estimates():
        peak = "none (no GPU tensor)" if e.peak_gib is None else f"{e.peak_gib:.1f}"
        lines.append(f"| {e.notebook} {e.title} | {e.summary}. | {e.gpu_tflop:,.1f} / {e.cpu_tflop:,.1f} "
                     f"| {_minutes(e.minutes[0])} - {_minutes(e.minutes[1])} | {peak} |")
    parts = list(estimates()[0].parts)
    lines += ["", "Where the minutes go (high / low MFU):", "", "| notebook | " + " | ".join(parts) + " |",
              "|---|" + "---|" * len(parts)]
    for e in estimates():
        lines.append(f"| {e.notebook} | " + " | ".join(
            "-" if e.parts[p][1] == 0 else f"{_minutes(e.parts[p][0])} / {_minutes(e.parts[p][1])}" for p in parts)
                     + " |")
    lines += ["", "Assumptions:", ""] + [f"- {a}" for a in assumptions()]
    if rows_too:
        lines += ["", "Every row (minutes: high / low MFU; memory: the row's peak without the CUDA context):", "",
                  "| notebook | cell | workload | device, precision | TFLOP | minutes | GiB |",
                  "|---|---|---|---|---|---|---|"]
        for w in workloads():
            fast, slow = seconds(w)
            gib = f"{memory_bytes(w) / GIB:.2f}" if w.device == "gpu" else "(CPU)"
            lines.append(f"| {w.notebook} | {w.cell} | {w.what} | {w.device}, {w.precision} | {flops(w) / 1e12:,.2f}"
                         f" | {_minutes(fast / 60)} / {_minutes(slow / 60)} | {gib} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", action="store_true", help="also print every row")
    parser.add_argument("--write", action="store_true", help=f"replace the section {SECTION!r} of results.md")
    parser.add_argument("--column", action="store_true", help="print the course map's gpu column and stop")
    args = parser.parse_args(argv)
    if args.column:
        for e in estimates():
            print(f"{e.notebook} {e.title}: {column_text(e)}")
        return
    text = markdown(rows_too=args.rows or args.write)
    print(f"## {SECTION}\n\n{text}")
    if args.write:
        from results import write_section

        write_section(SECTION, text)


if __name__ == "__main__":
    main()
