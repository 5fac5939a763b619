"""Schematic figures: one picture per core concept of the course, drawn with matplotlib.

Drawn by code, not pasted as images, so they render alike on GitHub, in JupyterLab and in Colab, and a change to
the course changes its picture in the same commit. Each function returns a ``matplotlib.figure.Figure``; the
notebooks show it where its concept is introduced::

    from roberta_from_scratch.course import schematics
    schematics.input_embeddings()

Boxes are coloured by role, the same way in every figure: data (tensors) in blue, computations in orange,
learned tables and parameters in green, what the loss sees in red, frozen parts in grey.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

DATA, COMPUTE, PARAMS, LOSS, FROZEN = "#dbe9f6", "#fde3c4", "#d9f0d3", "#f8d0d0", "#e4e4e4"
FONT = 9


def _canvas(width: float, height: float, title: str):
    """A figure whose axes use inches as data units, with the axes lines hidden: boxes are placed by hand."""
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    ax.set_title(title, fontsize=FONT + 2)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.9)
    return fig, ax


def _box(ax, x, y, w, h, text, color=COMPUTE, fontsize=FONT, **kwargs):
    """A rounded box with its lower-left corner at (x, y), and its text centred."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.06", facecolor=color,
                                edgecolor="#555555", linewidth=0.8))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize, **kwargs)


def _arrow(ax, start, end, text=None, color="#333333", offset=(0.08, 0.0)):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=10, color=color, linewidth=1.0,
                                 shrinkA=1, shrinkB=1))
    if text:
        ax.text((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1], text, fontsize=FONT - 1,
                ha="left", va="center", color="#333333")


def _chain(ax, x, top, width, height, gap, steps):
    """Boxes stacked from `top` downwards, joined by arrows; `steps` are (text, colour). Returns their bottoms."""
    bottoms = []
    y = top
    for i, (text, color) in enumerate(steps):
        y -= height
        _box(ax, x, y, width, height, text, color)
        if i:
            _arrow(ax, (x + width / 2, y + height + gap), (x + width / 2, y + height))
        bottoms.append(y)
        y -= gap
    return bottoms


# ----------------------------------------------------------------------------------------------- 01 tokenizer


def bpe_merge_loop():
    """Training byte-level BPE: count adjacent pairs, merge the most frequent one everywhere, repeat."""
    fig, ax = _canvas(9.0, 3.6, "Training byte-level BPE: the merge loop (Sennrich et al. 2016; GPT-2's byte level)")
    steps = [("words as bytes: 'Ġlower' = Ġ l o w e r", DATA), ("count every adjacent pair in the corpus", COMPUTE),
             ("take the most frequent pair, e.g. (l, o)", COMPUTE),
             ("merge it everywhere; append 'l o' to merges.txt", PARAMS)]
    bottoms = _chain(ax, 0.3, 3.2, 3.9, 0.5, 0.25, steps)
    ax.annotate("", xy=(4.2, bottoms[1] + 0.25), xytext=(4.2, bottoms[3] + 0.25),
                arrowprops=dict(arrowstyle="-|>", connectionstyle="arc3,rad=-0.6", color="#333333"))
    ax.text(4.75, (bottoms[1] + bottoms[3]) / 2 + 0.25, "repeat until the\nvocabulary is full", fontsize=FONT - 1,
            va="center")
    ax.text(6.2, 3.0, "one word, merge after merge", fontsize=FONT, weight="bold")
    for i, pieces in enumerate(["Ġ l o w e r", "Ġ lo w e r", "Ġ low e r", "Ġlow e r", "Ġlow er", "Ġlower"]):
        _box(ax, 6.2, 2.45 - 0.42 * i, 2.4, 0.34, pieces, DATA, family="monospace")
    return fig


# ----------------------------------------------------------------------------------------------- 02 attention


def attention_heads(batch: str = "B", seq: str = "T", hidden: str = "C", heads: str = "H"):
    """Multi-head self-attention with the shape of every tensor: project, split into heads, attend, merge."""
    fig, ax = _canvas(9.0, 5.0, "Multi-head self-attention, with shapes (Vaswani et al. 2017)")
    d = f"{hidden}/{heads}"
    x0, w, h = 0.3, 2.6, 0.42
    _box(ax, 3.2, 4.25, 2.6, h, f"x   ({batch}, {seq}, {hidden})", DATA)
    for i, name in enumerate("QKV"):
        left = x0 + i * 2.95
        _arrow(ax, (4.5, 4.25), (left + w / 2, 3.72))
        _box(ax, left, 3.3, w, h, f"{name} = x W_{name} + b   ({batch}, {seq}, {hidden})", PARAMS)
        _arrow(ax, (left + w / 2, 3.3), (left + w / 2, 2.97))
        _box(ax, left, 2.55, w, h, f"split: ({batch}, {heads}, {seq}, {d})", DATA)
    _arrow(ax, (x0 + w / 2, 2.55), (2.6, 2.07))
    _arrow(ax, (x0 + 2.95 + w / 2, 2.55), (3.4, 2.07))
    _box(ax, 1.2, 1.65, 3.6, h, f"softmax(Q Kᵀ / √({d}) + mask)   ({batch}, {heads}, {seq}, {seq})", COMPUTE)
    _arrow(ax, (3.0, 1.65), (4.3, 1.22))
    _arrow(ax, (x0 + 5.9 + w / 2, 2.55), (5.4, 1.22))
    _box(ax, 3.6, 0.8, 2.7, h, f"weights · V   ({batch}, {heads}, {seq}, {d})", COMPUTE)
    _arrow(ax, (6.3, 1.01), (6.6, 1.01))
    _box(ax, 6.6, 0.8, 2.2, h, f"merge: ({batch}, {seq}, {hidden})", DATA)
    _arrow(ax, (7.7, 0.8), (7.7, 0.52))
    _box(ax, 6.6, 0.1, 2.2, h, "output projection W_O", PARAMS)
    return fig


# ----------------------------------------------------------------------------------------------- 03 encoder


def input_embeddings():
    """RoBERTa's input: token + position + type embeddings, summed, then LayerNorm; positions start at pad + 1."""
    fig, ax = _canvas(10.0, 4.2, "The input sum: token + position + type, then LayerNorm and dropout")
    tokens = ["<s>", "Ġthe", "Ġcat", "</s>", "<pad>"]
    ids = [0, 5, 9, 2, 1]
    positions = [2, 3, 4, 5, 1]
    rows = [("token ids", ids, DATA), ("word embedding[id]", [f"e[{i}]" for i in ids], PARAMS),
            ("position ids", positions, DATA), ("position embedding[pos]", [f"p[{p}]" for p in positions], PARAMS),
            ("token-type embedding[0]", ["t[0]"] * 5, PARAMS)]
    for c, token in enumerate(tokens):
        ax.text(2.55 + 0.95 * c + 0.4, 3.75, token, ha="center", fontsize=FONT, family="monospace", weight="bold")
    for r, (label, values, color) in enumerate(rows):
        y = 3.25 - 0.5 * r
        ax.text(2.35, y + 0.17, label, ha="right", va="center", fontsize=FONT)
        for c, value in enumerate(values):
            _box(ax, 2.55 + 0.95 * c, y, 0.8, 0.34, str(value), color, fontsize=FONT - 1)
    ax.text(7.35, 2.42, "position = cumsum(not pad) · (not pad)\n           + pad id\nreal tokens 2, 3, 4, ...; pads 1;\n"
            "row 0 is never used, so 514 rows\nfor 512 tokens (fairseq's\nmake_positions)", fontsize=FONT - 1,
            va="center")
    _box(ax, 2.55, 0.55, 4.6, 0.36, "sum  →  LayerNorm  →  dropout", COMPUTE)
    _arrow(ax, (4.85, 1.25), (4.85, 0.91))
    ax.text(4.95, 1.08, "+", fontsize=FONT + 2, va="center")
    _box(ax, 2.55, 0.05, 4.6, 0.34, "input of layer 1: (batch, seq, hidden)", DATA)
    _arrow(ax, (4.85, 0.55), (4.85, 0.39))
    return fig


def post_ln_vs_pre_ln():
    """The two places for LayerNorm: after each residual sum (BERT, RoBERTa) or before each sub-layer (later models)."""
    fig, ax = _canvas(8.0, 5.0, "Post-LN (BERT, RoBERTa) against pre-LN (GPT-2 and most models since)")
    post = [("x", DATA), ("self-attention", COMPUTE), ("x + attention(x)", COMPUTE), ("LayerNorm", PARAMS),
            ("feed-forward (GELU)", COMPUTE), ("h + ffn(h)", COMPUTE), ("LayerNorm", PARAMS)]
    pre = [("x", DATA), ("LayerNorm", PARAMS), ("self-attention", COMPUTE), ("x + attention(LN(x))", COMPUTE),
           ("LayerNorm", PARAMS), ("feed-forward (GELU)", COMPUTE), ("h + ffn(LN(h))", COMPUTE)]
    ax.text(1.9, 4.5, "post-LN: normalise the sum", ha="center", fontsize=FONT, weight="bold")
    ax.text(6.1, 4.5, "pre-LN: normalise the input", ha="center", fontsize=FONT, weight="bold")
    _chain(ax, 0.7, 4.3, 2.4, 0.36, 0.17, post)
    _chain(ax, 4.9, 4.3, 2.4, 0.36, 0.17, pre)
    ax.text(1.9, 0.3, "the residual sum is normalised after\nevery sub-layer: needs a warm-up", ha="center", fontsize=FONT - 1)
    ax.text(6.1, 0.3, "an identity path from input to output;\na final LayerNorm after the stack", ha="center",
            fontsize=FONT - 1)
    return fig


def mlm_head():
    """The MLM head: only the masked positions go through dense, GELU, LayerNorm and the tied decoder."""
    fig, ax = _canvas(9.0, 3.9, "The MLM head, on the masked positions only, with the decoder tied to the embeddings")
    steps = [("encoder output  (B, T, C)", DATA), ("keep the M masked positions  (M, C)", COMPUTE),
             ("dense C → C,  GELU (exact erf)", COMPUTE), ("LayerNorm", PARAMS),
             ("h · Eᵀ + bias   →   logits  (M, V)", COMPUTE), ("cross-entropy with the M labels", LOSS)]
    _chain(ax, 0.4, 3.45, 3.9, 0.4, 0.17, steps)
    _box(ax, 5.3, 1.55, 3.3, 0.55, "word embeddings E  (V, C)\nthe same tensor as the input's", PARAMS)
    _arrow(ax, (5.3, 1.7), (4.3, 0.97), "tied", offset=(0.0, 0.22))
    ax.text(5.3, 0.55, "bias (V): the head's own parameter\n"
            "the other T − M positions skip the head:\n"
            "at 15% masking it runs on about 1 in 7", fontsize=FONT - 1, va="center")
    return fig


# ----------------------------------------------------------------------------------------------- 04 masking


def _documents_row(ax, y, blocks, label):
    colors = ["#9ecae1", "#fdae6b", "#a1d99b", "#bcbddc"]
    ax.text(0.1, y + 0.55, label, fontsize=FONT, weight="bold")
    x = 0.1
    for b, block in enumerate(blocks):
        start = x
        for doc, length in block:
            if doc == "sep":
                _box(ax, x, y, 0.25, 0.4, "</s>", "#ffffff", fontsize=FONT - 2)
                x += 0.25
            elif doc == "pad":
                _box(ax, x, y, length, 0.4, "padding", FROZEN, fontsize=FONT - 1)
                x += length
            else:
                _box(ax, x, y, length, 0.4, f"doc {doc + 1}", colors[doc], fontsize=FONT - 1)
                x += length
        ax.text((start + x) / 2, y - 0.18, f"block {b + 1}", ha="center", fontsize=FONT - 2)
        x += 0.2


def full_vs_doc_sentences():
    """How documents fill blocks of at most 512 tokens: across documents (FULL-SENTENCES) or not (DOC-SENTENCES)."""
    fig, ax = _canvas(9.9, 3.0, "Packing sentences into blocks (Liu et al. 2019, §4.2)")
    full = [[(0, 2.0), ("sep", 0), (1, 0.75)], [(1, 1.2), ("sep", 0), (2, 1.55)],
            [(2, 0.4), ("sep", 0), (3, 2.35)]]
    doc = [[(0, 2.0), ("pad", 1.0)], [(1, 1.95), ("pad", 1.05)], [(2, 1.95), ("pad", 1.05)]]
    _documents_row(ax, 1.75, full, "FULL-SENTENCES (the course, RoBERTa's main runs): blocks cross documents; "
                   "a </s> separates them")
    _documents_row(ax, 0.45, doc, "DOC-SENTENCES: a block ends with its document; short blocks mean fewer "
                   "tokens per batch")
    return fig


def masking_pipeline():
    """BERT's corruption: select 15% of the tokens, then 80% <mask>, 10% a random token, 10% unchanged."""
    fig, ax = _canvas(9.4, 3.4, "Masking a block for the MLM loss (Devlin et al. 2019; Liu et al. 2019, §2.3)")
    tokens = ["<s>", "ĠReturn", "Ġthe", "Ġnumber", "Ġof", "Ġitems", ".", "</s>"]
    selected = {2: "<mask>", 3: "<mask>", 5: "Ġfile"}  # what each selected position becomes
    kept = {4}  # selected, left unchanged
    rows = [("input", tokens, lambda i: DATA),
            ("selected (15%)", ["✓" if i in selected or i in kept else "" for i in range(8)],
             lambda i: COMPUTE if i in selected or i in kept else "#ffffff"),
            ("model sees", [selected.get(i, t) for i, t in enumerate(tokens)],
             lambda i: COMPUTE if i in selected or i in kept else DATA),
            ("labels", [tokens[i] if i in selected or i in kept else "-100" for i in range(8)],
             lambda i: LOSS if i in selected or i in kept else "#ffffff")]
    for r, (label, values, color) in enumerate(rows):
        y = 2.55 - 0.62 * r
        ax.text(1.35, y + 0.19, label, ha="right", va="center", fontsize=FONT)
        for i, value in enumerate(values):
            _box(ax, 1.5 + 0.98 * i, y, 0.88, 0.38, value, color(i), fontsize=FONT - 1.5, family="monospace")
    ax.text(1.5, 0.3, "of the selected: 80% → <mask>, 10% → a random token ('Ġfile'), 10% unchanged ('Ġof');\n"
            "the loss is taken only where the label is not -100 (4 of 8 selected here, to show every case)",
            fontsize=FONT - 1, va="center")
    return fig


# ----------------------------------------------------------------------------------------------- 05 pretraining


def training_step(micro_batches: int = 3):
    """One optimizer step: micro-batches accumulate gradients, then clip, AdamW, schedule, zero the gradients."""
    fig, ax = _canvas(9.4, 3.8, "One training step with gradient accumulation")
    _box(ax, 0.2, 2.9, 2.0, 0.45, "the step's blocks\n(seed, step), masked once", DATA)
    for k in range(micro_batches):
        y = 2.95 - 0.85 * k
        _arrow(ax, (2.2, 3.12), (2.6, y + 0.2))
        _box(ax, 2.6, y, 1.5, 0.4, f"micro-batch {k + 1}:\nits rows", DATA, fontsize=FONT - 1)
        _arrow(ax, (4.1, y + 0.2), (4.4, y + 0.2))
        _box(ax, 4.4, y, 2.1, 0.4, "loss × (its masked tokens\n/ the batch's), backward", COMPUTE, fontsize=FONT - 1)
        _arrow(ax, (6.5, y + 0.2), (6.9, 1.95))
    _box(ax, 6.9, 1.7, 2.3, 0.5, ".grad: the sum = the\nwhole batch's gradient", PARAMS, fontsize=FONT - 1)
    steps = [("clip the norm (course's choice)", COMPUTE), ("AdamW step", PARAMS),
             ("schedule step, zero .grad", COMPUTE)]
    _arrow(ax, (8.05, 1.7), (8.05, 1.48))
    _chain(ax, 6.9, 1.48, 2.3, 0.34, 0.14, steps)
    return fig


# ----------------------------------------------------------------------------------------------- 06 finetuning


def finetuning_modes(layers: int = 4):
    """Which parameters train: a probe (the head alone, on frozen features), the top layer and the head, or
    everything."""
    fig, ax = _canvas(8.4, 4.3, "What trains when finetuning (green) and what stays frozen (grey)")
    modes = [("probe (head only)", 0), ("top layer + head", 1), ("full finetuning", layers + 1)]
    for m, (name, trained) in enumerate(modes):
        x = 0.5 + 2.75 * m
        ax.text(x + 1.0, 3.9, name, ha="center", fontsize=FONT, weight="bold")
        parts = ["classification head on <s>"] + [f"layer {layers - i}" for i in range(layers)] + ["embeddings"]
        for i, part in enumerate(parts):
            trains = i == 0 or i <= trained
            _box(ax, x, 3.4 - 0.55 * (i + 1) + 0.1, 2.0, 0.4, part, PARAMS if trains else FROZEN)
    return fig


# ----------------------------------------------------------------------------------------------- 08 scaling up


def memory_per_gpu(parameters: float = 355e6, gpus: int = 8):
    """Bytes per GPU for fp32 training state under DDP, ZeRO-1, ZeRO-2 and ZeRO-3 / FSDP (Rajbhandari et al. 2020).

    fp32 weights, gradients and Adam's two moments are 4 bytes each per parameter (16 in all); each ZeRO stage
    shards one more of them over the GPUs. Activations come on top and are not drawn."""
    fig, ax = plt.subplots(figsize=(8.0, 3.4))
    schemes = ["DDP", "ZeRO-1\n(optimizer)", "ZeRO-2\n(+ gradients)", "ZeRO-3 / FSDP\n(+ weights)"]
    sharded = [set(), {"Adam m, v"}, {"Adam m, v", "gradients"}, {"Adam m, v", "gradients", "weights"}]
    parts = [("weights", 4, PARAMS), ("gradients", 4, COMPUTE), ("Adam m, v", 8, DATA)]
    bottoms = [0.0] * len(schemes)
    for name, nbytes, color in parts:
        heights = [parameters * nbytes / (gpus if name in s else 1) / 2**30 for s in sharded]
        ax.bar(schemes, heights, bottom=bottoms, color=color, edgecolor="#555555", label=f"{name} ({nbytes} B/param)")
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    for i, total in enumerate(bottoms):
        ax.text(i, total, f"{total:.2f} GiB", ha="center", va="bottom", fontsize=FONT)
    ax.set_ylabel("GiB per GPU (training state)")
    ax.set_ylim(0, max(bottoms) * 1.2)
    ax.set_title(f"{parameters / 1e6:.0f}M parameters on {gpus} GPUs, fp32 state; activations not included",
                 fontsize=FONT + 2)
    ax.legend(fontsize=FONT - 1)
    fig.tight_layout()
    return fig


FIGURES = {f.__name__: f for f in (bpe_merge_loop, attention_heads, input_embeddings, post_ln_vs_pre_ln, mlm_head,
                                   full_vs_doc_sentences, masking_pipeline, training_step, finetuning_modes,
                                   memory_per_gpu)}
"""Every schematic, by name; the tests draw each one and `tests/test_schematics.py` checks where each is shown."""
