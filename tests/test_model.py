"""The encoder against transformers: random models both ways, logits, hidden states, attentions, losses, files."""

import json

import pytest
import torch

from roberta_from_scratch import OfflineError
from roberta_from_scratch.config import RobertaConfig
from roberta_from_scratch.model import (
    RobertaForMaskedLM,
    RobertaForQuestionAnswering,
    RobertaForSequenceClassification,
    RobertaForTokenClassification,
    RobertaModel,
    count_parameters,
    create_position_ids,
)

import transformers  # noqa: E402 (a declared dependency: a broken import must fail, not skip)
# Ours against transformers: the same formulas, other kernels and orders (SDPA or explicit attention on either side),
# in fp32 (eps 1.2e-7) through up to 3 layers of scrambled N(0, 0.3) weights, with outputs up to about 10. Seen: up to
# 4.8e-6 (0.43 of a 1e-5 tolerance) with MKL's compatible path and the default ATen kernels, 4.3e-6 with AVX-512.
# 5e-5 leaves 10x room; the mistakes these tests catch move outputs by 1e-2 and more (0.13 for the LM head's GELU).
TOL = {"rtol": 5e-5, "atol": 5e-5}

CONFIGS = {
    "odd": dict(vocab_size=101, hidden_size=36, num_hidden_layers=2, num_attention_heads=3, intermediate_size=37,
                max_position_embeddings=40),
    "four-heads": dict(vocab_size=257, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                       intermediate_size=64, max_position_embeddings=24, hidden_act="gelu"),
    "one-layer-tanh": dict(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=24, max_position_embeddings=20, hidden_act="gelu_new"),
    "pytorch-tanh": dict(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=24, max_position_embeddings=20, hidden_act="gelu_pytorch_tanh"),
    "relu": dict(vocab_size=80, hidden_size=24, num_hidden_layers=2, num_attention_heads=2, intermediate_size=40,
                 max_position_embeddings=20, hidden_act="relu"),
    "silu": dict(vocab_size=80, hidden_size=24, num_hidden_layers=2, num_attention_heads=2, intermediate_size=40,
                 max_position_embeddings=20, hidden_act="silu"),
}


def test_every_activation_the_config_accepts_is_tested_against_transformers():
    """Catches: an activation added to the model that no parity test runs."""
    from roberta_from_scratch.model import ACTIVATION

    assert {c.get("hidden_act", "gelu") for c in CONFIGS.values()} == set(ACTIVATION)


def hf_config(fields, **extra):
    # transformers' defaults are BERT's: every RoBERTa-specific field is set explicitly.
    return transformers.RobertaConfig(**{"type_vocab_size": 1, "layer_norm_eps": 1e-5, "pad_token_id": 1,
                                         "bos_token_id": 0, "eos_token_id": 2, **fields, **extra},
                                      attn_implementation="eager")


def padded_batch(vocab_size, lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(3, vocab_size, (len(lengths), width), generator=g)
    ids[:, 0] = 0
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, n - 1] = 2
        ids[row, n:] = 1
        mask[row, :n] = 1
    return ids, mask


def scramble(model, seed):
    """Weights far from the initialisation (N(0, 0.02) hides differences under the tolerance): every matrix and
    bias at N(0, 0.3), every LayerNorm gain at 1 + N(0, 0.3)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.3
            p.copy_(1 + noise if ("norm" in name.lower() and name.endswith("weight")) else noise)
    return model


def assert_same_outputs(ours, theirs, ids, mask):
    a = ours(ids, attention_mask=mask, output_attentions=True, output_hidden_states=True)
    b = theirs(ids, attention_mask=mask, output_attentions=True, output_hidden_states=True)
    if getattr(b, "start_logits", None) is not None:  # question answering: transformers returns no logits
        torch.testing.assert_close(a.start_logits, b.start_logits, **TOL)
        torch.testing.assert_close(a.end_logits, b.end_logits, **TOL)
        b.logits = torch.stack([b.start_logits, b.end_logits], dim=-1)
    torch.testing.assert_close(a.logits, b.logits, **TOL)
    assert len(a.hidden_states) == len(b.hidden_states) and len(a.attentions) == len(b.attentions)
    for x, y in zip(a.hidden_states, b.hidden_states):
        torch.testing.assert_close(x, y, **TOL)
    for x, y in zip(a.attentions, b.attentions):
        torch.testing.assert_close(x, y, **TOL)
    fast = ours(ids, attention_mask=mask)  # the SDPA path, without weights
    torch.testing.assert_close(fast.logits, b.logits, **TOL)


MODEL_CLASSES = {  # kind: (ours, transformers')
    "mlm": (RobertaForMaskedLM, "RobertaForMaskedLM"),
    "classification": (RobertaForSequenceClassification, "RobertaForSequenceClassification"),
    "token-classification": (RobertaForTokenClassification, "RobertaForTokenClassification"),
    "question-answering": (RobertaForQuestionAnswering, "RobertaForQuestionAnswering"),
}


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("kind", MODEL_CLASSES)
def test_random_transformers_model_loads_into_ours_and_back(name, kind, tmp_path):
    """Catches: any difference in the forward pass (embeddings, attention, the layers, both heads) or in the
    weights' names, both ways, for every activation the config accepts. The weights are scrambled far from the
    initialisation, so differences that N(0, 0.02) weights would hide under the tolerance show (the MLM head
    applying hidden_act instead of exact GELU was one: off by 0.13 with relu). For question answering: start and
    end swapped, and qa_outputs renamed on loading (it was once taken for a bare encoder's key and prefixed with
    'roberta.')."""
    torch.manual_seed(0)
    fields = CONFIGS[name]
    ours_cls, hf_name = MODEL_CLASSES[kind]
    hf_cls = getattr(transformers, hf_name)
    num_labels = 2 if kind == "question-answering" else 3  # transformers sizes the span layer with num_labels
    theirs = scramble(hf_cls(hf_config(fields, num_labels=num_labels)).eval(), seed=0)
    theirs.save_pretrained(tmp_path / "hf")
    ours = ours_cls.from_pretrained(tmp_path / "hf")
    assert not ours.load_report.missing and not ours.load_report.unused, ours.load_report
    ids, mask = padded_batch(fields["vocab_size"], [9, 5, 2, 7])
    assert_same_outputs(ours, theirs, ids, mask)

    # and the other way: ours saved, transformers loads it and agrees
    torch.manual_seed(1)
    fresh = scramble(ours_cls(RobertaConfig(**fields, num_labels=3)).eval(), seed=1)
    fresh.save_pretrained(tmp_path / "ours")
    back = hf_cls.from_pretrained(tmp_path / "ours", attn_implementation="eager").eval()
    assert_same_outputs(fresh, back, ids, mask)


def test_mlm_loss_equals_transformers_and_the_head_runs_only_on_labelled_positions(tmp_path):
    torch.manual_seed(2)
    fields = CONFIGS["odd"]
    theirs = transformers.RobertaForMaskedLM(hf_config(fields)).eval()
    theirs.save_pretrained(tmp_path)
    ours = RobertaForMaskedLM.from_pretrained(tmp_path)
    ids, mask = padded_batch(fields["vocab_size"], [12, 8, 3])
    labels = torch.full_like(ids, -100)
    chosen = (torch.rand(ids.shape, generator=torch.Generator().manual_seed(3)) < 0.3) & mask.bool()
    labels[chosen] = ids[chosen]
    out = ours(ids, attention_mask=mask, labels=labels)
    ref = theirs(ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(out.loss, ref.loss, **TOL)
    assert out.logits.shape == (int(chosen.sum()), fields["vocab_size"])  # sparse: only the labelled positions
    dense = ours(ids, attention_mask=mask).logits
    torch.testing.assert_close(out.logits, dense[chosen], **TOL)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(dense.view(-1, dense.size(-1)),
                                                                           labels.view(-1)), **TOL)
    none = ours(ids, attention_mask=mask, labels=torch.full_like(ids, -100))
    assert none.loss.item() == 0.0 and none.loss.grad_fn is not None  # zero, not NaN, and still differentiable


def test_classification_loss_equals_transformers(tmp_path):
    torch.manual_seed(4)
    fields = CONFIGS["four-heads"]
    for num_labels, labels in [(3, torch.tensor([0, 2, 1])), (1, torch.tensor([0.5, -1.0, 2.0]))]:
        theirs = transformers.RobertaForSequenceClassification(hf_config(fields, num_labels=num_labels)).eval()
        theirs.save_pretrained(tmp_path / str(num_labels))
        ours = RobertaForSequenceClassification.from_pretrained(tmp_path / str(num_labels))
        ids, mask = padded_batch(fields["vocab_size"], [10, 6, 4])
        torch.testing.assert_close(ours(ids, mask, labels=labels).loss, theirs(ids, attention_mask=mask,
                                                                                labels=labels).loss, **TOL)


def test_token_classification_loss_equals_transformers(tmp_path):
    """Catches: -100 positions (padding, special tokens) counted in the loss, the loss of a batch with no labelled
    position being NaN (an empty mean) or detached from the graph, and labels indexed against the wrong logits."""
    torch.manual_seed(10)
    fields = CONFIGS["four-heads"]
    theirs = scramble(transformers.RobertaForTokenClassification(hf_config(fields, num_labels=5)).eval(), seed=10)
    theirs.save_pretrained(tmp_path)
    ours = RobertaForTokenClassification.from_pretrained(tmp_path)
    ids, mask = padded_batch(fields["vocab_size"], [10, 6, 4])
    labels = torch.randint(0, 5, ids.shape, generator=torch.Generator().manual_seed(11))
    labels[mask == 0] = -100
    labels[:, 0] = -100  # <s>
    labels[0, 3:5] = -100  # a word's later sub-word tokens
    out = ours(ids, mask, labels=labels)
    ref = theirs(ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(out.logits, ref.logits, **TOL)
    torch.testing.assert_close(out.loss, ref.loss, **TOL)
    assert out.loss.dtype == torch.float32
    none = ours(ids, mask, labels=torch.full_like(ids, -100))
    assert torch.isnan(theirs(ids, attention_mask=mask, labels=torch.full_like(ids, -100)).loss)  # what we avoid
    assert none.loss.item() == 0.0 and none.loss.grad_fn is not None  # zero, not NaN, and still differentiable


def test_token_classifier_dropout_follows_classifier_dropout_like_transformers(tmp_path):
    """Catches: the token classifier without its dropout, or with hidden_dropout_prob where classifier_dropout is
    set. In training, with the encoder's dropout at 0, both libraries draw the same mask from the same seed, so the
    outputs are equal only if the dropout is there, with the right p, in the same place."""
    fields = {**CONFIGS["odd"], "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    torch.manual_seed(12)
    theirs = scramble(transformers.RobertaForTokenClassification(hf_config(fields, num_labels=4,
                                                                           classifier_dropout=0.5)), seed=12)
    theirs.save_pretrained(tmp_path)
    ours = RobertaForTokenClassification.from_pretrained(tmp_path).train()
    theirs.train()
    ids, mask = padded_batch(fields["vocab_size"], [9, 5, 7])
    torch.manual_seed(13)
    a = ours(ids, mask).logits
    torch.manual_seed(13)
    b = theirs(ids, attention_mask=mask).logits
    torch.testing.assert_close(a, b, **TOL)
    assert not torch.allclose(a, ours.eval()(ids, mask).logits)  # the dropout did something
    assert RobertaForTokenClassification(RobertaConfig(**CONFIGS["odd"], hidden_dropout_prob=0.2)).dropout.p == 0.2


def test_question_answering_loss_equals_transformers(tmp_path):
    """Catches: start and end positions outside the sequence not clamped (an index error) or not ignored (clamped
    to the last token instead of to seq_len), negative positions not clamped to <s>, the two cross-entropies summed
    instead of averaged, start and end losses swapped, and a batch whose every start (or end) is ignored giving NaN
    (transformers' empty mean) instead of a zero with a graph."""
    torch.manual_seed(14)
    fields = CONFIGS["four-heads"]
    theirs = scramble(transformers.RobertaForQuestionAnswering(hf_config(fields, num_labels=2)).eval(), seed=14)
    theirs.save_pretrained(tmp_path)
    ours = RobertaForQuestionAnswering.from_pretrained(tmp_path)
    ids, mask = padded_batch(fields["vocab_size"], [10, 6, 4, 8])
    for start, end in [([3, 1, 2, 5], [4, 3, 2, 7]),  # every answer inside
                       ([3, 40, -2, 5], [4, 50, 1, 10]),  # cut off by truncation (ignored) and negative (to <s>)
                       ([2, 10, 11, 0], [2, 3, 12, 9])]:  # seq_len itself (ignored), and seq_len - 1
        start, end = torch.tensor(start), torch.tensor(end)
        out = ours(ids, mask, start_positions=start, end_positions=end)
        ref = theirs(ids, attention_mask=mask, start_positions=start, end_positions=end)
        torch.testing.assert_close(out.loss, ref.loss, **TOL)
        assert out.loss.dtype == torch.float32
    outside, inside = torch.tensor([10, 20, 30, 40]), torch.tensor([1, 2, 3, 4])
    ref_end = theirs(ids, attention_mask=mask, start_positions=inside, end_positions=inside).end_logits
    half = torch.nn.functional.cross_entropy(ref_end, inside) / 2
    assert torch.isnan(theirs(ids, attention_mask=mask, start_positions=outside, end_positions=inside).loss)
    out = ours(ids, mask, start_positions=outside, end_positions=inside)
    torch.testing.assert_close(out.loss, half, **TOL)  # the start term is 0, not NaN
    none = ours(ids, mask, start_positions=outside, end_positions=outside)
    assert none.loss.item() == 0.0 and none.loss.grad_fn is not None


def test_question_answering_head_has_two_outputs_whatever_num_labels_says(tmp_path):
    """Catches: the span layer sized with num_labels (a config made for a 3-label task would give 3 scores per
    token), and a file saved from such a config that transformers' RobertaForQuestionAnswering cannot read (it
    sizes the layer with the num_labels it finds in config.json)."""
    torch.manual_seed(15)
    fields = CONFIGS["odd"]
    ours = scramble(RobertaForQuestionAnswering(RobertaConfig(**fields, num_labels=3)).eval(), seed=15)
    assert ours.qa_outputs.out_features == 2
    ours.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["num_labels"] == 2
    theirs = transformers.RobertaForQuestionAnswering.from_pretrained(tmp_path, attn_implementation="eager").eval()
    ids, mask = padded_batch(fields["vocab_size"], [7, 4])
    assert_same_outputs(ours, theirs, ids, mask)
    again = RobertaForQuestionAnswering.from_pretrained(tmp_path)
    assert not again.load_report.missing and not again.load_report.unused


def test_checkpoints_of_other_heads_load_into_the_token_classifier(tmp_path):
    """Catches: a sequence classifier's checkpoint (classifier.dense, classifier.out_proj) crashing the token
    classifier or leaving its encoder unloaded; a 5-label token classifier loaded with num_labels=3 failing on the
    head's shape instead of starting a new head over the loaded encoder (or keeping the old labels' names)."""
    torch.manual_seed(16)
    fields = CONFIGS["odd"]
    ids, mask = padded_batch(fields["vocab_size"], [8, 5])
    sequence = transformers.RobertaForSequenceClassification(hf_config(fields, num_labels=3)).eval()
    scramble(sequence, seed=16)
    sequence.save_pretrained(tmp_path / "sequence")
    encoder = sequence.roberta(ids, attention_mask=mask).last_hidden_state
    for overrides in ({}, {"num_labels": 3}, {"num_labels": 7}):
        tagger = RobertaForTokenClassification.from_pretrained(tmp_path / "sequence", **overrides)
        assert set(tagger.load_report.missing) == {"classifier.weight", "classifier.bias"}, overrides
        assert tagger.load_report.unused and all(k.startswith("classifier.") for k in tagger.load_report.unused)
        torch.testing.assert_close(tagger(ids, mask).last_hidden_state, encoder, **TOL)
        assert tagger(ids, mask).logits.shape == (2, 8, overrides.get("num_labels", 3))

    five = scramble(transformers.RobertaForTokenClassification(
        hf_config(fields, id2label={i: f"TAG{i}" for i in range(5)})).eval(), seed=17)
    five.save_pretrained(tmp_path / "five")
    same = RobertaForTokenClassification.from_pretrained(tmp_path / "five")
    assert not same.load_report.missing and same.config.id2label[4] == "TAG4"
    torch.testing.assert_close(same(ids, mask).logits, five(ids, attention_mask=mask).logits, **TOL)
    three = RobertaForTokenClassification.from_pretrained(tmp_path / "five", num_labels=3)
    assert set(three.load_report.missing) == {"classifier.weight", "classifier.bias"}
    assert not three.load_report.unused  # the old head is dropped, not reported as a misfit
    assert three.config.num_labels == 3 and three.config.id2label is None  # TAG0..TAG4 named the old head
    assert three(ids, mask).logits.shape == (2, 8, 3)
    torch.testing.assert_close(three(ids, mask).last_hidden_state,
                               five.roberta(ids, attention_mask=mask).last_hidden_state, **TOL)
    # a new head (N(0, 0.02)), not a slice of the scrambled one (N(0, 0.3)): far apart, not merely a bit different
    assert (three.classifier.weight - five.classifier.weight[:3]).abs().max() > 0.1

    qa = RobertaForQuestionAnswering.from_pretrained(tmp_path / "five")  # and a tagger's file into the span model
    assert set(qa.load_report.missing) == {"qa_outputs.weight", "qa_outputs.bias"}
    assert set(qa.load_report.unused) == {"classifier.weight", "classifier.bias"}


@pytest.mark.parametrize("name", CONFIGS)
def test_gradients_equal_transformers(name, tmp_path):
    """Catches: a backward pass that differs from transformers' where the forward pass agrees (a detached term: a
    detached position embedding left every tensor the old test compared unchanged), in any parameter, for every
    activation. Every parameter's gradient is compared, on weights scrambled and then scaled by a random factor per
    tensor: N(0, 0.02), LayerNorm gains at 1 and biases at 0, and nearly uniform attention hide mistakes."""
    torch.manual_seed(5)
    fields = CONFIGS[name]
    theirs = scramble(transformers.RobertaForMaskedLM(hf_config(fields)).eval(), seed=5)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in theirs.parameters():
            p.mul_(0.7 * (1.6 / 0.7) ** torch.rand((), generator=g))  # each tensor x a factor in [0.7, 1.6]
    theirs.save_pretrained(tmp_path)
    ours = RobertaForMaskedLM.from_pretrained(tmp_path).eval()
    ids, mask = padded_batch(fields["vocab_size"], [8, 5])
    labels = torch.where(mask.bool() & (torch.arange(8) % 3 == 1), ids, torch.full_like(ids, -100))
    out = ours(ids, mask, labels=labels, output_attentions=True)
    # the premise: attention far from uniform (1/8 over the first sequence's 8 keys); seen 0.54 to 0.84 per layer
    assert min(a[0].amax(-1).mean().item() for a in out.attentions) > 0.4
    out.loss.backward()
    theirs(ids, attention_mask=mask, labels=labels).loss.backward()
    from roberta_from_scratch.weights import _OURS_TO_HF, _rename

    named = {_rename(key, _OURS_TO_HF): p for key, p in ours.named_parameters()}
    assert named.keys() == dict(theirs.named_parameters()).keys()  # every parameter compared, none left out
    for key, p in theirs.named_parameters():
        # TOL (5e-5 + 5e-5 x |grad|, gradients up to about 5 here): seen at most 0.094 of it, by config 0.018 to
        # 0.094 (10x room); a detached position embedding or key is off by 1e-2 and more
        torch.testing.assert_close(named[key].grad, p.grad, **TOL, msg=lambda m, key=key: f"{key}: {m}")


def test_checkpoints_with_a_pooler_or_another_head_load_with_a_report(tmp_path):
    torch.manual_seed(6)
    fields = CONFIGS["odd"]
    transformers.RobertaModel(hf_config(fields)).save_pretrained(tmp_path / "base")  # has a pooler
    bare = RobertaModel.from_pretrained(tmp_path / "base")
    assert not bare.load_report.missing and not bare.load_report.unused  # the pooler is expected: no complaint
    mlm = RobertaForMaskedLM.from_pretrained(tmp_path / "base")
    assert set(mlm.load_report.missing) == {"lm_head.bias", "lm_head.dense.bias", "lm_head.dense.weight",
                                            "lm_head.layer_norm.bias", "lm_head.layer_norm.weight"}
    transformers.RobertaForMaskedLM(hf_config(fields)).save_pretrained(tmp_path / "mlm")
    classifier = RobertaForSequenceClassification.from_pretrained(tmp_path / "mlm", num_labels=4)
    assert all(k.startswith("classifier.") for k in classifier.load_report.missing)
    assert all(k.startswith("lm_head.") for k in classifier.load_report.unused)
    assert "newly initialised" in str(classifier.load_report) and "not used" in str(classifier.load_report)
    assert classifier.config.num_labels == 4


def test_missing_encoder_weights_fail_and_a_missing_head_is_announced(tmp_path, caplog):
    """Catches: from_pretrained on a file whose tensors match none (or only some) of the encoder's names returning a
    randomly initialised model without a word, and a head that starts random without the warning transformers
    gives (while a head asked for with num_labels, or with new_head=True, is meant to be new: no warning)."""
    from safetensors.torch import save_file

    config = RobertaConfig(**CONFIGS["odd"])
    RobertaForMaskedLM(config).save_pretrained(tmp_path / "mlm")
    weights = tmp_path / "mlm" / "model.safetensors"
    save_file({"unrelated.weight": torch.zeros(3)}, str(weights))
    with pytest.raises(ValueError, match=r"(?s)model.safetensors: (\d+) of the encoder's \1 tensors are not in the "
                                         r"file.*build RobertaForMaskedLM\(config\) instead"):
        RobertaForMaskedLM.from_pretrained(tmp_path / "mlm")
    RobertaForMaskedLM(config).save_pretrained(tmp_path / "mlm")
    from safetensors.torch import load_file

    partial = {k: v for k, v in load_file(str(weights)).items() if ".layer.1." not in k}  # one layer lost
    save_file(partial, str(weights))
    with pytest.raises(ValueError, match=r"16 of the encoder's \d+ tensors"):  # a layer's 16
        RobertaForMaskedLM.from_pretrained(tmp_path / "mlm")
    RobertaForMaskedLM(config).save_pretrained(tmp_path / "mlm")
    with caplog.at_level("WARNING", logger="roberta_from_scratch"):
        caplog.clear()
        RobertaForSequenceClassification.from_pretrained(tmp_path / "mlm")
        assert "newly initialised" in caplog.text and "classifier" in caplog.text and "Train the new head" in caplog.text
        caplog.clear()
        RobertaForSequenceClassification.from_pretrained(tmp_path / "mlm", num_labels=3)
        assert caplog.text == ""
        caplog.clear()
        from roberta_from_scratch.model import RobertaForQuestionAnswering

        RobertaForQuestionAnswering.from_pretrained(tmp_path / "mlm", new_head=True)  # finetuning's task_model
        RobertaForSequenceClassification.from_pretrained(tmp_path / "mlm", id2label={0: "a", 1: "b"})
        assert caplog.text == ""
        RobertaForMaskedLM.from_pretrained(tmp_path / "mlm")
        assert caplog.text == ""


def test_config_json_both_ways(tmp_path):
    ours = RobertaConfig.from_preset("tiny", vocab_size=8000, id2label={0: "neg", 1: "pos"})
    ours.save(tmp_path)
    theirs = transformers.RobertaConfig.from_pretrained(tmp_path)
    for field in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                  "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id", "hidden_act"):
        assert getattr(theirs, field) == getattr(ours, field), field
    assert theirs.id2label == {0: "neg", 1: "pos"}
    theirs.save_pretrained(tmp_path / "hf")
    assert RobertaConfig.load(tmp_path / "hf") == ours
    assert RobertaConfig.from_dict(transformers.RobertaConfig(num_labels=5).to_dict()).num_labels == 5


def test_parameter_counts_of_the_official_sizes():
    base = RobertaConfig.from_preset("base")
    assert RobertaForMaskedLM(base).num_parameters() == 124_697_433
    assert RobertaForSequenceClassification(RobertaConfig.from_preset("base", num_labels=3)).num_parameters() == 124_647_939
    assert RobertaModel(base).num_parameters() == 124_055_040
    tagger = RobertaForTokenClassification(RobertaConfig.from_preset("base", num_labels=9))
    assert tagger.num_parameters() == 124_055_040 + 768 * 9 + 9
    reader = RobertaForQuestionAnswering(base)
    assert reader.num_parameters() == 124_055_040 + 768 * 2 + 2
    assert count_parameters(tagger)["classification head"] == 768 * 9 + 9
    assert count_parameters(reader)["question-answering head"] == 768 * 2 + 2
    groups = count_parameters(RobertaForMaskedLM(RobertaConfig.from_preset("tiny", vocab_size=1000)))
    assert groups["token embeddings"] == 1000 * 128 and groups["attention"] == 2 * 4 * (128 * 128 + 128)


def test_initialisation_follows_roberta():
    torch.manual_seed(7)
    model = RobertaForMaskedLM(RobertaConfig.from_preset("mini", vocab_size=5000))
    weight = model.roberta.layers[0].ffn_in.weight
    assert abs(weight.std().item() - 0.02) < 0.001 and abs(weight.mean().item()) < 0.001
    assert (model.roberta.layers[0].ffn_in.bias == 0).all() and (model.lm_head.bias == 0).all()
    assert (model.roberta.embeddings.word_embeddings.weight[1] == 0).all()  # <pad>
    assert (model.roberta.embeddings.position_embeddings.weight[1] == 0).all()
    norm = model.roberta.layers[0].ffn_norm
    assert (norm.weight == 1).all() and (norm.bias == 0).all()
    assert model.lm_head.embeddings[0].weight is model.roberta.embeddings.word_embeddings.weight  # tied


def test_position_ids_start_after_padding():
    ids = torch.tensor([[0, 7, 8, 2, 1, 1], [0, 9, 2, 1, 1, 1]])
    assert create_position_ids(ids, padding_idx=1).tolist() == [[2, 3, 4, 5, 1, 1], [2, 3, 4, 1, 1, 1]]


def test_bad_input_gets_clear_errors(tmp_path):
    model = RobertaForMaskedLM(RobertaConfig(**CONFIGS["odd"])).eval()
    with pytest.raises(ValueError, match=r"token id 101 is outside the vocabulary \[0, 101\)"):
        model(torch.tensor([[0, 101, 2]]))
    with pytest.raises(ValueError, match=r"token id -1 is outside"):
        model(torch.tensor([[0, -1, 2]]))
    with pytest.raises(ValueError, match="longer than the 38 the position table allows"):
        model(torch.zeros(1, 39, dtype=torch.long))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(1, 2\); expected \(1, 3\)"):
        model(torch.tensor([[0, 5, 2]]), attention_mask=torch.ones(1, 2))
    with pytest.raises(ValueError, match="must hold integer token ids"):
        model(torch.zeros(1, 3))
    model.save_pretrained(tmp_path / "ok")
    weights = tmp_path / "ok" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    with pytest.raises(ValueError, match="model.safetensors: cannot be read"):
        RobertaForMaskedLM.from_pretrained(tmp_path / "ok")
    RobertaForMaskedLM(RobertaConfig(**{**CONFIGS["odd"], "hidden_size": 48})).save_pretrained(tmp_path / "wide")
    config = json.loads((tmp_path / "wide" / "config.json").read_text())
    config["hidden_size"] = 36
    (tmp_path / "wide" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"(?s)does not fit.*39 tensors.*position_embeddings.weight: checkpoint "
                                         r"\(40, 48\) vs model \(40, 36\).*and 27 more"):
        RobertaForMaskedLM.from_pretrained(tmp_path / "wide")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        RobertaForMaskedLM.from_pretrained(tmp_path / "empty")
    with pytest.raises(ValueError, match="hidden_size=30 must be a multiple of num_attention_heads=4"):
        RobertaConfig(hidden_size=30, num_attention_heads=4)


def test_bad_labels_and_span_positions_get_clear_errors():
    """Catches: token labels of the wrong shape or outside [0, num_labels) failing inside cross_entropy (an index
    error, or a device-side assert on a GPU) instead of naming the fix; span positions of the wrong shape, of a
    float dtype, or one given without the other being silently ignored or failing deep inside."""
    config = RobertaConfig(**CONFIGS["odd"], num_labels=5)
    tagger = RobertaForTokenClassification(config).eval()
    ids, mask = padded_batch(config.vocab_size, [6, 4])
    labels = torch.zeros_like(ids)
    with pytest.raises(ValueError, match=r"labels have shape \(2, 7\); expected \(2, 6\), the shape of input_ids"):
        tagger(ids, mask, labels=torch.zeros(2, 7, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels have shape \(2,\); expected \(2, 6\)"):
        tagger(ids, mask, labels=torch.tensor([1, 2]))  # a sequence classifier's labels
    with pytest.raises(ValueError, match=r"label 5 is outside \[0, 5\).*set num_labels in the config"):
        tagger(ids, mask, labels=labels.index_fill(1, torch.tensor([2]), 5))
    with pytest.raises(ValueError, match=r"label -1 is outside \[0, 5\)"):
        tagger(ids, mask, labels=labels.index_fill(1, torch.tensor([2]), -1))
    with pytest.raises(ValueError, match="labels must hold integer class ids, got dtype torch.float32"):
        tagger(ids, mask, labels=labels.float())
    assert tagger(ids, mask, labels=labels.index_fill(1, torch.tensor([2]), -100)).loss.isfinite()

    reader = RobertaForQuestionAnswering(config).eval()
    start, end = torch.tensor([1, 2]), torch.tensor([3, 2])
    with pytest.raises(ValueError, match="start_positions given without end_positions: a span needs both"):
        reader(ids, mask, start_positions=start)
    with pytest.raises(ValueError, match="end_positions given without start_positions"):
        reader(ids, mask, end_positions=end)
    with pytest.raises(ValueError, match=r"start_positions has shape \(2, 1\); expected \(2,\), one token index"):
        reader(ids, mask, start_positions=start[:, None], end_positions=end)
    with pytest.raises(ValueError, match=r"end_positions has shape \(3,\); expected \(2,\)"):
        reader(ids, mask, start_positions=start, end_positions=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="end_positions must hold integer token indices, got dtype torch.float32"):
        reader(ids, mask, start_positions=start, end_positions=end.float())
    assert reader(ids, mask, start_positions=start, end_positions=end).loss.isfinite()


def test_bin_checkpoints_load_without_unpickling_code(tmp_path):
    torch.manual_seed(8)
    theirs = transformers.RobertaForMaskedLM(hf_config(CONFIGS["odd"])).eval()
    (tmp_path / "bin").mkdir()
    theirs.config.save_pretrained(tmp_path / "bin")
    torch.save(theirs.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    ours = RobertaForMaskedLM.from_pretrained(tmp_path / "bin")
    ids, mask = padded_batch(101, [6, 4])
    torch.testing.assert_close(ours(ids, mask).logits, theirs(ids, attention_mask=mask).logits, **TOL)

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"weight": Payload()}, tmp_path / "bin" / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pytorch_model.bin: cannot be read"):
        RobertaForMaskedLM.from_pretrained(tmp_path / "bin")


def test_hub_id_offline_fails_in_one_line():
    with pytest.raises(OfflineError) as info:
        RobertaForMaskedLM.from_pretrained("FacebookAI/roberta-base")
    assert "\n" not in str(info.value) and "RobertaConfig" in str(info.value)


def test_old_tensorflow_layernorm_names_load(tmp_path):
    torch.manual_seed(9)
    theirs = transformers.RobertaForMaskedLM(hf_config(CONFIGS["odd"])).eval()
    state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
             for k, v in theirs.state_dict().items()}
    (tmp_path / "old").mkdir()
    theirs.config.save_pretrained(tmp_path / "old")
    torch.save(state, tmp_path / "old" / "pytorch_model.bin")
    ours = RobertaForMaskedLM.from_pretrained(tmp_path / "old")
    assert not ours.load_report.missing
    ids, mask = padded_batch(101, [5, 3])
    torch.testing.assert_close(ours(ids, mask).logits, theirs(ids, attention_mask=mask).logits, **TOL)


def test_a_padded_vocabulary_computes_exactly_what_the_real_one_does(tmp_path):
    """Catches: the padded rows' scores reaching the softmax (a loss that moves with the padding), logits wider
    than the vocabulary, the extra rows getting gradients or weights (they would drift under the optimizer), the
    decoder left on the old matrix (padding must keep the tie), the padded rows counted as parameters, and files
    or transformers' model seeing the padding. 101 tokens, padded to 128: scrambled weights, so any leak shows."""
    fields = CONFIGS["odd"]
    theirs = scramble(transformers.RobertaForMaskedLM(hf_config(fields)).eval(), seed=3)
    theirs.save_pretrained(tmp_path / "hf")
    plain = RobertaForMaskedLM.from_pretrained(tmp_path / "hf")
    padded = RobertaForMaskedLM.from_pretrained(tmp_path / "hf")
    assert padded.pad_vocabulary(64) == 128 and padded.pad_vocabulary(64) == 128  # idempotent
    embedding = padded.roberta.embeddings.word_embeddings
    assert embedding.weight.shape == (128, 36) and padded.lm_head.bias.shape == (128,)
    assert padded.lm_head.embeddings[0].weight is embedding.weight  # still tied
    assert not embedding.weight[101:].any() and not padded.lm_head.bias[101:].any()
    assert padded.num_parameters() == plain.num_parameters() == theirs.num_parameters()
    assert count_parameters(padded) == count_parameters(plain)

    ids, mask = padded_batch(fields["vocab_size"], [9, 5, 2, 7])
    labels = torch.where(mask.bool() & (torch.arange(9) % 3 == 1), ids, torch.full_like(ids, -100))
    a, b = plain(ids, mask, labels=labels), padded(ids, mask, labels=labels)
    assert b.logits.shape == a.logits.shape == (int((labels != -100).sum()), 101)
    # Not bit for bit: the decoder's product has 128 rows here and 101 there, and a BLAS blocks the two widths
    # differently (MKL's compatible path: 3.6e-7 apart on logits up to 9). fp32 near 10 rounds to 1e-6; a padded row
    # reaching the softmax would move the loss by 1e-2 or more.
    torch.testing.assert_close(b.logits, a.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.loss, a.loss, rtol=1e-5, atol=1e-5)
    assert padded(ids, mask).logits.shape == theirs(ids, attention_mask=mask).logits.shape == (4, 9, 101)
    torch.testing.assert_close(padded(ids, mask).logits, theirs(ids, attention_mask=mask).logits, **TOL)
    a.loss.backward()
    b.loss.backward()
    # products of two widths again (gradients up to 1.5, fp32, sums over the labelled positions): seen 4.2e-7 apart
    # with AVX2 kernels (the former atol of 1e-7 failed there); 5e-6 leaves 10x room
    torch.testing.assert_close(embedding.weight.grad[:101], plain.roberta.embeddings.word_embeddings.weight.grad,
                               rtol=1e-5, atol=5e-6)
    # exact: the extra rows' scores are cut off before the loss, so their gradient is a sum of exact zeros
    assert not embedding.weight.grad[101:].any() and not padded.lm_head.bias.grad[101:].any()

    padded.save_pretrained(tmp_path / "ours")  # transformers' shapes: the real rows only
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "ours" / "model.safetensors")
    assert saved["roberta.embeddings.word_embeddings.weight"].shape == (101, 36)
    assert saved["lm_head.bias"].shape == (101,)
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["vocab_size"] == 101
    back = transformers.RobertaForMaskedLM.from_pretrained(tmp_path / "ours", attn_implementation="eager").eval()
    torch.testing.assert_close(back(ids, attention_mask=mask).logits, theirs(ids, attention_mask=mask).logits,
                               **TOL)
    again = RobertaForMaskedLM(RobertaConfig(**fields))
    again.pad_vocabulary(32)  # a file of real rows loads into a padded model (a checkpoint, resumed)
    from roberta_from_scratch.weights import load_state_dict_into

    assert not str(load_state_dict_into(again, saved)).startswith("newly")
    # exact: saving and loading copy the bits
    assert torch.equal(again.roberta.embeddings.word_embeddings.weight[:101], embedding.weight[:101].detach())
    assert not again.roberta.embeddings.word_embeddings.weight[101:].any()
    with pytest.raises(ValueError, match="positive integer"):
        padded.pad_vocabulary(0)
    wide = {**saved, "roberta.embeddings.word_embeddings.weight": torch.randn(128, 36), "lm_head.bias": torch.randn(128)}
    with pytest.raises(ValueError, match="does not fit this model's shapes"):  # rows the file has are never cut
        load_state_dict_into(RobertaForMaskedLM(RobertaConfig(**fields)), wide)


def test_label_positions_select_the_rows_the_boolean_mask_selects():
    """Catches: label_positions gathering other rows than labels != -100 (another order, a transposed flattening,
    an off-by-one batch offset): loss, logits and every gradient must be those of the boolean selection."""
    from roberta_from_scratch.model import label_positions_of

    torch.manual_seed(0)
    model = scramble(RobertaForMaskedLM(RobertaConfig(**CONFIGS["odd"])).eval(), seed=4)
    ids, mask = padded_batch(101, [9, 5, 2, 7])
    labels = torch.where(mask.bool() & (torch.rand(ids.shape) < 0.4), ids, torch.full_like(ids, -100))
    positions = label_positions_of(labels)
    assert positions.tolist() == [r * 9 + c for r, c in (labels != -100).nonzero().tolist()]
    a = model(ids, mask, labels=labels)
    a.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    b = model(ids, mask, labels=labels, label_positions=positions)
    b.loss.backward()
    # exact: the same rows in the same order (a copy either way) through the same ops on the same shapes
    assert torch.equal(a.logits, b.logits) and torch.equal(a.loss, b.loss)
    for name, p in model.named_parameters():  # equal bit for bit too (each row scattered back once, onto zeros)
        torch.testing.assert_close(p.grad, grads[name], rtol=0, atol=1e-6, msg=name)


def test_an_untied_decoder_is_refused_by_the_mlm_model_and_ignored_by_a_task_model(tmp_path):
    """Catches: lm_head.decoder.weight always dropped on load, so that a checkpoint saved with
    tie_word_embeddings: false (a decoder of its own) loads into our tied MLM head with the embeddings as its
    decoder, silently."""
    import transformers

    from roberta_from_scratch.model import RobertaForSequenceClassification

    config = dict(vocab_size=120, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                  max_position_embeddings=40)
    torch.manual_seed(0)
    untied = transformers.RobertaForMaskedLM(transformers.RobertaConfig(**config, tie_word_embeddings=False))
    with torch.no_grad():
        untied.lm_head.decoder.weight.normal_()  # its own matrix, unlike the embeddings
    untied.save_pretrained(tmp_path / "untied")
    with pytest.raises(ValueError, match="tie_word_embeddings: false"):
        RobertaForMaskedLM.from_pretrained(tmp_path / "untied")
    RobertaForSequenceClassification.from_pretrained(tmp_path / "untied", num_labels=2)  # the decoder is not used
    tied = transformers.RobertaForMaskedLM(transformers.RobertaConfig(**config))
    tied.save_pretrained(tmp_path / "tied")
    ours = RobertaForMaskedLM.from_pretrained(tmp_path / "tied")
    ids = torch.tensor([[0, 15, 27, 2]])
    with torch.no_grad():
        # two implementations of the same model: fp32 sums in another order (1e-5 leaves room)
        torch.testing.assert_close(ours(ids).logits, tied.eval()(ids).logits, atol=1e-5, rtol=1e-5)


def test_an_empty_batch_gets_a_clear_error():
    """Catches: an empty batch failing inside torch.aminmax with a message about reductions."""
    model = RobertaForMaskedLM(RobertaConfig.from_preset("tiny", vocab_size=50))
    with pytest.raises(ValueError, match="input_ids is empty"):
        model(torch.zeros(0, 5, dtype=torch.long))
