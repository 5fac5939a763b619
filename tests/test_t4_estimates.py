"""benchmarks/t4_estimates.py: its FLOP count and memory rule against hand computations, and a row per notebook."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from roberta_from_scratch.config import RobertaConfig
from roberta_from_scratch.model import RobertaForMaskedLM, RobertaForSequenceClassification

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def t4():
    path = ROOT / "benchmarks" / "t4_estimates.py"
    spec = importlib.util.spec_from_file_location("t4_estimates", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["t4_estimates"] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("t4_estimates", None)


# 2 layers of width 8, 2 heads, feed-forward 32, vocabulary 100: small enough to count by hand
TINY = RobertaConfig(vocab_size=100, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                     max_position_embeddings=18)


@pytest.fixture
def tiny(t4, monkeypatch):
    monkeypatch.setitem(t4.CONFIGS, "tiny-test", TINY)
    t4.parameters.cache_clear()
    yield "tiny-test"
    t4.parameters.cache_clear()


def test_flops_of_a_workload_equal_a_hand_count(t4, tiny):
    # per token: 6N with N = 2 layers x (4·8² + 2·8·32) = 1,536 -> 9,216, plus attention 12·L·H·T = 12·2·8·16
    # = 3,072: 12,288. The head, per predicted position: 6·8·(8 + 100) = 5,184. A batch of 3 x 16 = 48 tokens with
    # a quarter predicted (12): 48·12,288 + 12·5,184 = 589,824 + 62,208 = 652,032; 5 batches: 3,260,160.
    train = t4.Workload("xx", 0, "hand count", model=tiny, batch=3, seq_len=16, batches=5, targets=0.25)
    assert t4.flops(train) == 3_260_160
    forward = t4.Workload("xx", 0, "hand count", model=tiny, kind="forward", batch=3, seq_len=16, batches=5,
                          targets=0.25)
    assert t4.flops(forward) == pytest.approx(3_260_160 / 3, rel=1e-12)  # 2N instead of 6N: a third
    # the top layer of 2 trains: forward everywhere (1/3) + backward of half the layers (2/3 · 1/2)
    top = t4.Workload("xx", 0, "hand count", model=tiny, head="topics", kind="top1", batch=3, seq_len=16, batches=5)
    assert t4.flops(top) == pytest.approx(5 * 48 * 12_288 * (1 / 3 + 1 / 3), rel=1e-12)


def test_the_memory_rule_is_16_bytes_per_parameter_plus_activations_and_logits(t4, tiny):
    torch.manual_seed(0)
    n = RobertaForMaskedLM(TINY).num_parameters()  # a real model, not the meta one the script builds
    assert t4.parameters(tiny, "mlm") == (n, n)
    # Korthikanti et al.: s·b·h·(34 + 5·a·s/h) per layer in 16-bit = 16·3·8·(34 + 5·2·16/8) = 384·54 = 20,736;
    # 384·34 = 13,056 where SDPA keeps no T x T tensor; fp32 doubles both
    assert t4.activation_bytes(TINY, 3, 16, explicit=True, precision="fp16") == 20_736
    assert t4.activation_bytes(TINY, 3, 16, explicit=False, precision="fp16") == 13_056
    assert t4.activation_bytes(TINY, 3, 16, explicit=False, precision="fp32") == 2 * 13_056
    train = t4.Workload("xx", 0, "rule", model=tiny, batch=3, seq_len=16, batches=1, targets=0.25)
    logits = 12 * 100 * 4  # 12 predicted positions x vocabulary 100 x 4 bytes (fp32 loss)
    assert t4.memory_bytes(train) == 16 * n + 2 * 13_056 + logits
    assert t4.memory_bytes(train) - 2 * 13_056 - logits == 16 * n  # the training state alone: 16 B/parameter
    empty = t4.Workload("xx", 0, "state only", model=tiny, batch=0, seq_len=0, batches=1)
    assert t4.memory_bytes(empty) == 16 * n
    resident = t4.Workload("xx", 0, "state only", model=tiny, batch=0, seq_len=0, batches=1, resident_bytes=1_000)
    assert t4.memory_bytes(resident) == 16 * n + 1_000
    gradients_only = t4.Workload("xx", 0, "no optimizer", model=tiny, batch=0, seq_len=0, batches=1, optimizer=False)
    assert t4.memory_bytes(gradients_only) == 8 * n  # fp32 weights and gradients, no Adam moments
    # a probe: the encoder frozen (4 B per parameter), the classification head trained (16 B)
    classifier = RobertaForSequenceClassification(RobertaConfig(**{**TINY.__dict__, "num_labels": 7}))
    total = classifier.num_parameters()
    head = sum(p.numel() for p in classifier.classifier.parameters())
    probe = t4.Workload("xx", 0, "probe", model=tiny, head="topics", kind="probe", batch=0, seq_len=0, batches=1)
    assert t4.memory_bytes(probe) == 4 * (total - head) + 16 * head


def test_every_notebook_has_a_row_citing_a_code_cell(t4):
    notebooks = sorted(p.name[:2] for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert notebooks == [f"{i:02d}" for i in range(12)]
    assert [e.notebook for e in t4.estimates()] == notebooks
    for row in t4.workloads():
        path = next((ROOT / "notebooks").glob(f"{row.notebook}_*.ipynb"))
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        assert cells[row.cell]["cell_type"] == "code", (row.notebook, row.cell, row.what)


def test_estimates_are_marked_as_such(t4):
    text = t4.markdown()
    assert "not measurements" in text and "assumed" in text.lower()
    for e in t4.estimates():
        column = t4.column_text(e)
        assert column.startswith("est. ") and "(T4" in column, column
        fast, slow = e.minutes
        assert 0 < fast <= slow
        assert e.peak_gib is None or t4.CUDA_CONTEXT_GIB < e.peak_gib < 15  # a T4 shows 15 GiB of its 16 GB
