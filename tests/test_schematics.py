"""The schematic figures: each draws, says what its concept needs, keeps its text on the canvas and unoverlapped,
and appears in the notebook that introduces its concept."""

import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from roberta_from_scratch.course import schematics  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# What each picture must say, and the notebook where its concept is introduced.
EXPECTED = {
    "bpe_merge_loop": (["count every adjacent pair", "most frequent pair", "merges.txt", "Ġlower"], "01_tokenizer"),
    "attention_heads": (["(B, H, T, C/H)", "(B, H, T, T)", "merge: (B, T, C)", "√(C/H)"], "02_attention"),
    "input_embeddings": (["position ids", "LayerNorm", "t[0]", "make_positions"], "03_encoder"),
    "post_ln_vs_pre_ln": (["post-LN", "pre-LN", "x + attention(LN(x))", "final LayerNorm"], "03_encoder"),
    "mlm_head": (["masked positions  (M, C)", "tied", "GELU", "logits  (M, V)"], "03_encoder"),
    "full_vs_doc_sentences": (["FULL-SENTENCES", "DOC-SENTENCES", "</s>", "padding"], "04_dynamic_masking"),
    "masking_pipeline": (["<mask>", "-100", "80%", "Ġfile"], "04_dynamic_masking"),
    "training_step": (["micro-batch 3", "AdamW step", "clip the norm", "whole batch's gradient"], "05_pretraining"),
    "finetuning_modes": (["probe (head only)", "top layer + head", "full finetuning", "embeddings"], "06_finetuning"),
    "memory_per_gpu": (["DDP", "ZeRO-1", "ZeRO-3 / FSDP", "GiB per GPU"], "08_scaling_up"),
}


def texts_and_boxes(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found = []
    for ax in fig.axes:  # the text a reader sees: a hidden axis keeps invisible tick labels, which do not count
        found += [*ax.texts, ax.title, ax.xaxis.label, ax.yaxis.label]
        if ax.get_legend():
            found += ax.get_legend().get_texts()
        if ax.axison:
            found += [*ax.get_xticklabels(), *ax.get_yticklabels()]
    found = [t for t in found if t.get_visible() and t.get_text().strip()]
    return [(t.get_text(), t.get_window_extent(renderer)) for t in found]


def test_every_figure_is_listed():
    """Catches: a schematic added to the module without an expectation here (so without a test or a notebook)."""
    assert set(schematics.FIGURES) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_figure_draws_its_concept_on_the_canvas(name):
    """Catches: a figure that raises, comes out blank, lost a label its concept needs, or has text that runs off
    the canvas or over other text (which a reader sees as a cut or garbled label)."""
    fig = schematics.FIGURES[name]()
    try:
        texts = texts_and_boxes(fig)
        joined = "\n".join(text for text, _ in texts)
        for needed in EXPECTED[name][0]:
            assert needed in joined, f"{name}: {needed!r} is not drawn"
        width, height = fig.canvas.get_width_height()
        for text, box in texts:
            assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width + 1 and box.y1 <= height + 1, \
                f"{name}: {text!r} runs off the canvas ({box} in {width} x {height})"
        for (a, box_a), (b, box_b) in itertools.combinations(texts, 2):
            overlap_w = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
            overlap_h = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
            assert overlap_w <= 1 or overlap_h <= 1, f"{name}: {a!r} and {b!r} overlap"
        pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3]
        assert pixels.std() > 10, f"{name}: the figure is nearly blank"
    finally:
        plt.close(fig)


def test_memory_bars_follow_the_zero_formulas():
    """Catches: a ZeRO bar that shards the wrong part. Per GPU: DDP 16 B/param; ZeRO-1 4 + 4 + 8/N; ZeRO-2
    4 + 12/N; ZeRO-3 16/N."""
    parameters, gpus = 1e9, 4
    fig = schematics.memory_per_gpu(parameters, gpus)
    try:
        ax = fig.axes[0]
        totals = {}
        for bar in ax.patches:
            x = round(bar.get_x() + bar.get_width() / 2)
            totals[x] = totals.get(x, 0.0) + bar.get_height()
        expected = [16, 8 + 8 / gpus, 4 + 12 / gpus, 16 / gpus]
        for x, per_param in enumerate(expected):
            assert totals[x] == pytest.approx(parameters * per_param / 2**30, rel=1e-9), (x, totals[x])
    finally:
        plt.close(fig)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_figure_appears_where_its_concept_is_introduced(name):
    """Catches: a schematic that no learner sees (drawn by a notebook cell, with its output committed)."""
    notebook = nbformat.read(ROOT / "notebooks" / f"{EXPECTED[name][1]}.ipynb", as_version=4)
    cells = [c for c in notebook.cells if c.cell_type == "code" and f"schematics.{name}(" in c.source]
    assert cells, f"{EXPECTED[name][1]} does not draw schematics.{name}"
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for c in cells for o in c.outputs), f"{EXPECTED[name][1]}: schematics.{name} has no committed picture"
