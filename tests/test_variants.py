"""The architecture switches of notebook 11 (pre-LN, no biases, gated feed-forward, rotary positions) and the
ablation ladder's bookkeeping. Each test names the bug it catches."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from roberta_from_scratch.course import experiments
from roberta_from_scratch.attention import RotaryEmbedding
from roberta_from_scratch.config import ARCHITECTURE, RobertaConfig, glu_intermediate_size
from roberta_from_scratch.model import RobertaForMaskedLM, RobertaForSequenceClassification, RobertaLayer
from roberta_from_scratch.training import flops_per_token

BASE = dict(vocab_size=300, max_position_embeddings=40, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
VARIANTS = {
    "pre-LN": dict(norm_position="pre"),
    "no biases": dict(bias=False),
    "GeGLU": dict(feed_forward="glu", intermediate_size=glu_intermediate_size(512)),
    "SwiGLU": dict(feed_forward="glu", hidden_act="silu", intermediate_size=glu_intermediate_size(512)),
    "RoPE": dict(position_embedding_type="rotary"),
    "all": dict(norm_position="pre", bias=False, feed_forward="glu", intermediate_size=glu_intermediate_size(512),
                position_embedding_type="rotary"),
}


def config(**fields) -> RobertaConfig:
    return RobertaConfig.from_preset("tiny", **{**BASE, **fields})


def scrambled(model: nn.Module, seed: int = 0) -> nn.Module:
    """Weights far from N(0, 0.02) and LayerNorm far from (1, 0): small differences then show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if p.dim() == 1 and p.shape[0] == 128 else 0.0))
    return model


def batch(seed: int = 0, batch_size: int = 3, tokens: int = 17):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 300, (batch_size, tokens), generator=g)
    labels = torch.where(torch.rand(ids.shape, generator=g) < 0.3, ids, -100)
    labels[:, 1] = ids[:, 1]
    return ids, labels


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_trains_every_parameter(name):
    # catches: a parameter the variant leaves unused (a position table kept beside RoPE, a bias that is built but
    # never added), or a forward pass that breaks under autograd
    torch.manual_seed(0)
    model = RobertaForMaskedLM(config(**VARIANTS[name]))
    ids, labels = batch()
    loss = model(ids, labels=labels).loss
    assert torch.isfinite(loss)
    loss.backward()
    no_gradient = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_gradient, no_gradient


def _reference_layer(layer: RobertaLayer, cfg: RobertaConfig) -> nn.TransformerEncoderLayer:
    """PyTorch's own encoder layer with our layer's weights."""
    ref = nn.TransformerEncoderLayer(cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, dropout=0.0,
                                     activation="gelu", layer_norm_eps=cfg.layer_norm_eps, batch_first=True,
                                     norm_first=cfg.norm_position == "pre", bias=cfg.bias).eval()
    a = layer.attention
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(torch.cat([a.query.weight, a.key.weight, a.value.weight]))
        ref.self_attn.out_proj.weight.copy_(a.output.weight)
        ref.linear1.weight.copy_(layer.ffn_in.weight)
        ref.linear2.weight.copy_(layer.ffn_out.weight)
        ref.norm1.weight.copy_(layer.attention_norm.weight)
        ref.norm2.weight.copy_(layer.ffn_norm.weight)
        if cfg.bias:
            ref.self_attn.in_proj_bias.copy_(torch.cat([a.query.bias, a.key.bias, a.value.bias]))
            ref.self_attn.out_proj.bias.copy_(a.output.bias)
            for ours, theirs in ((layer.ffn_in, ref.linear1), (layer.ffn_out, ref.linear2),
                                 (layer.attention_norm, ref.norm1), (layer.ffn_norm, ref.norm2)):
                theirs.bias.copy_(ours.bias)
    return ref


@pytest.mark.parametrize("fields", [{}, {"norm_position": "pre"}, {"bias": False},
                                    {"norm_position": "pre", "bias": False}], ids=str)
def test_layer_equals_pytorchs_transformer_encoder_layer(fields):
    # catches: pre-LN normalising the sum instead of the sub-block's input, a missing residual, a bias left in
    # (PyTorch's layer with norm_first and bias=False is the reference)
    cfg = config(**fields)
    layer = scrambled(RobertaLayer(cfg)).eval()
    ref = _reference_layer(layer, cfg)
    x = torch.randn(2, 9, cfg.hidden_size, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 6:] = False
    with torch.no_grad():
        ours, _ = layer(x, mask)
        theirs = ref(x, src_key_padding_mask=~mask)
    # PyTorch's layer (its own kernels and order) against ours, fp32, outputs up to about 90 from scrambled weights:
    # rounding of a few ulp of 90 (1e-5 each) shows near zero as an absolute error, seen up to 7.6e-5 (MKL's
    # compatible path). atol 1e-3 leaves 10x room; a missing residual or a misplaced norm moves outputs by 1 or more.
    torch.testing.assert_close(ours[mask], theirs[mask], atol=1e-3, rtol=1e-4)
    if fields:  # and the variant really differs from RoBERTa's layer with the same weights
        plain = RobertaLayer(config()).eval()
        plain.load_state_dict(layer.state_dict(), strict=False)
        assert not torch.allclose(plain(x, mask)[0][mask], ours[mask], atol=1e-2)


@pytest.mark.parametrize("act, fn", [("gelu", F.gelu), ("silu", F.silu)])
def test_gated_feed_forward_is_shazeers_formula(act, fn):
    # catches: the gate and the value swapped (activation on the wrong half), or no gate at all
    cfg = config(feed_forward="glu", hidden_act=act, intermediate_size=48)
    layer = scrambled(RobertaLayer(cfg))
    x = torch.randn(4, cfg.hidden_size, generator=torch.Generator().manual_seed(2))
    w, v = layer.ffn_in.weight[:48], layer.ffn_in.weight[48:]  # value rows, then gate rows
    b, c = layer.ffn_in.bias[:48], layer.ffn_in.bias[48:]
    expected = ((x @ w.T + b) * fn(x @ v.T + c)) @ layer.ffn_out.weight.T + layer.ffn_out.bias
    # the formula in another order, fp32, outputs up to about 110 (scrambled weights): seen 7.6e-6 apart, which is
    # 0.36 of 1e-5 near zero; 1e-4 leaves 10x room, a swapped gate and value differ by 1 and more
    torch.testing.assert_close(layer.feed_forward(x), expected, atol=1e-4, rtol=1e-4)


def _complex_rope(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """The paper's form: pair i as the complex number x_i + i x_{i + d/2}, multiplied by e^{i m theta^(-2i/d)}."""
    half = x.size(-1) // 2
    z = torch.complex(x[..., :half].double(), x[..., half:].double())
    freqs = theta ** (-torch.arange(half, dtype=torch.float64) * 2 / x.size(-1))
    z = z * torch.polar(torch.ones(len(positions), half, dtype=torch.float64), positions.double()[:, None] * freqs)
    return torch.cat([z.real, z.imag], dim=-1).float()


def test_rope_is_the_papers_rotation_and_scores_depend_only_on_the_offset():
    # catches: a wrong frequency (exponent or base), rotate_half's sign flipped, rotation by absolute position
    # leaking into the scores
    rope = RotaryEmbedding(16, theta=10000.0)
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(2, 12, 16, generator=g), torch.randn(2, 12, 16, generator=g)
    positions = torch.arange(12)
    rq, rk = rope(q, k, positions)
    torch.testing.assert_close(rq, _complex_rope(q, positions, 10000.0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rq.norm(dim=-1), q.norm(dim=-1))  # a rotation keeps lengths
    # one query vector and one key vector placed at every position: the score of (m, n) must depend on m - n only
    qs, ks = q[0, :1].expand(12, 16), k[0, :1].expand(12, 16)
    scores = rope(qs, ks, positions)[0] @ rope(qs, ks, positions)[1].T
    for offset in range(-11, 12):
        diagonal = torch.diagonal(scores, offset)
        torch.testing.assert_close(diagonal, diagonal[:1].expand_as(diagonal), atol=1e-4, rtol=1e-4)
    assert abs(float(scores.diagonal(0)[0] - scores.diagonal(3)[0])) > 1e-3  # offsets do matter
    shifted = rope(q, k, positions + 7)
    torch.testing.assert_close(shifted[0] @ shifted[1].transpose(-1, -2), rq @ rk.transpose(-1, -2),
                               atol=1e-4, rtol=1e-4)


def test_rope_angles_stay_fp32_when_the_model_is_cast_to_bf16():
    # catches: the frequencies kept in a float buffer, which model.to(torch.bfloat16) rounds to 8 bits of mantissa
    # (cosines up to 0.22 off below position 512, the review measured)
    model = RobertaForMaskedLM(config(position_embedding_type="rotary")).to(torch.bfloat16)
    rope = model.roberta.layers[0].attention.rotary
    positions = torch.arange(512)
    cos, sin = rope.angles(positions)
    reference = RotaryEmbedding(rope.head_dim, rope.theta).angles(positions)  # never cast
    # the same fp32 arithmetic on both sides: products of positions and frequencies, then cos and sin; 1e-6 allows
    # another libm, a bf16 frequency is off by 1e-1 and more
    torch.testing.assert_close(cos, reference[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(sin, reference[1], atol=1e-6, rtol=0)
    assert cos.dtype == torch.float32


def test_rope_model_sees_order_without_a_position_table():
    # catches: rotary positions not applied (with no position table the model is then blind to word order: swapping
    # two neighbours of a token leaves that token's output exactly as it was)
    torch.manual_seed(0)
    model = RobertaForMaskedLM(config(position_embedding_type="rotary")).eval()
    assert model.roberta.embeddings.position_embeddings is None
    with torch.no_grad():  # matrices at N(0, 0.1): at 0.02 attention is nearly uniform and order barely shows
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.1)
    ids = torch.tensor([[0, 10, 20, 30, 40, 2]])
    swapped = torch.tensor([[0, 20, 10, 30, 40, 2]])

    def change():  # of the same token's logits, its neighbours reordered
        with torch.no_grad():
            return (model(ids).logits[0, 3] - model(swapped).logits[0, 3]).abs().max().item()

    with_rotation = change()
    for layer in model.roberta.layers:
        layer.attention.rotary = None
    assert change() < 1e-4 and with_rotation > 1e-2


def test_parameter_counts_of_the_switches():
    # catches: GeGLU at the wrong width (not the plain layer's parameter count), biases left somewhere, RoPE
    # keeping its table, pre-LN's final LayerNorm missing
    cfg = config()
    h, ff, layers, vocab = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.vocab_size
    base = RobertaForMaskedLM(cfg).num_parameters()
    count = {name: RobertaForMaskedLM(config(**fields)).num_parameters() for name, fields in VARIANTS.items()}
    assert count["pre-LN"] - base == 2 * h  # the final LayerNorm
    assert count["RoPE"] - base == -cfg.max_position_embeddings * h
    biases = layers * (4 * h + ff + h + 2 * h) + h + 2 * h  # q k v o, ffn in and out, 2 norms; embedding norm; head
    assert base - count["no biases"] == biases
    plain_ffn, gated_ffn = 2 * h * ff + ff + h, 3 * h * glu_intermediate_size(ff) + 2 * glu_intermediate_size(ff) + h
    assert count["GeGLU"] - base == layers * (gated_ffn - plain_ffn)
    assert abs(count["GeGLU"] - base) / base < 0.001
    assert glu_intermediate_size(3072) == 2048 and vocab == 300
    assert flops_per_token(config(**VARIANTS["GeGLU"]), 64) - flops_per_token(cfg, 64) == \
        6 * layers * (3 * h * glu_intermediate_size(ff) - 2 * h * ff)


@pytest.mark.parametrize("name", VARIANTS)
def test_variants_save_their_switches_and_load_back_exactly(name, tmp_path):
    # catches: a switch not written to config.json (the model would load as RoBERTa's), weights renamed on the way
    torch.manual_seed(0)
    model = scrambled(RobertaForMaskedLM(config(**VARIANTS[name]))).eval()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "roberta-variant"
    assert {k: saved[k] for k in ARCHITECTURE} == model.config.architecture()
    loaded = RobertaForMaskedLM.from_pretrained(tmp_path)
    assert loaded.config == model.config
    ids, _ = batch()
    with torch.no_grad():  # exact: the same weights bit for bit (saved and loaded) through the same ops and shapes
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, atol=0, rtol=0)


def test_roberta_itself_still_writes_transformers_config(tmp_path):
    # catches: the switches leaking into RoBERTa's config.json (transformers' files must stay as they were)
    RobertaForMaskedLM(config()).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "roberta" and not set(ARCHITECTURE) & set(saved)
    hub_style = {**saved, "position_embedding_type": "absolute"}  # older transformers wrote this field
    assert RobertaConfig.from_dict(hub_style) == config()


def test_incompatible_loads_are_refused_with_the_reason(tmp_path):
    # catches: pre-LN weights loaded silently into a post-LN model (same names and shapes), a variant file
    # accepted by transformers as a RoBERTa
    import transformers

    RobertaForMaskedLM(config(norm_position="pre")).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"another architecture \(norm_position: the checkpoint has 'pre'"):
        RobertaForMaskedLM.from_pretrained(tmp_path, norm_position="post")
    with pytest.raises(ValueError, match="feed_forward"):
        RobertaForSequenceClassification.from_pretrained(tmp_path, feed_forward="glu")
    RobertaForSequenceClassification.from_pretrained(tmp_path, new_head=True, hidden_dropout_prob=0.1)  # allowed
    with pytest.raises((ValueError, KeyError), match="roberta-variant"):
        transformers.AutoConfig.from_pretrained(tmp_path)
    hf_relative = {**config().to_dict(), "position_embedding_type": "relative_key"}
    with pytest.raises(ValueError, match="relative_key positions are not built here"):
        RobertaConfig.from_dict(hf_relative)


@pytest.mark.parametrize("fields, message", [
    ({"norm_position": "middle"}, "norm_position='middle'"), ({"feed_forward": "moe"}, "feed_forward='moe'"),
    ({"bias": 0}, "bias=0"), ({"rope_theta": 0.5}, "rope_theta=0.5"),
    ({"position_embedding_type": "rotary", "hidden_size": 126, "num_attention_heads": 2,
      "intermediate_size": 64}, "head_dim=63 must be even")])
def test_bad_switches_get_clear_errors(fields, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        config(**fields)


def test_pre_ln_hidden_states_end_with_the_final_norm():
    # catches: hidden_states[-1] left unnormalised while last_hidden_state is normalised (pooling would differ),
    # or the final LayerNorm never applied
    model = scrambled(RobertaForMaskedLM(config(norm_position="pre"))).eval()
    ids, _ = batch()
    with torch.no_grad():
        out = model.roberta(ids, output_hidden_states=True)
        norm = model.roberta.final_norm
        unnormalised = model.roberta.layers[-1](out.hidden_states[-2])[0]
    torch.testing.assert_close(out.hidden_states[-1], out.last_hidden_state)
    torch.testing.assert_close(out.last_hidden_state, norm(unnormalised))
    assert not torch.allclose(unnormalised, out.last_hidden_state, atol=1e-2)


def test_evaluation_masks_follow_the_eval_collator(small_tokenizer):
    # catches: runs that train at 40% masking evaluated at 40% (their numbers would not be comparable with 15%'s)
    from roberta_from_scratch.masking import DataCollatorForMLM
    from roberta_from_scratch.training import Trainer, TrainingConfig

    blocks = [list(range(5, 69)) for _ in range(64)]
    model = RobertaForMaskedLM(config(vocab_size=small_tokenizer.vocab_size, max_position_embeddings=66))
    at = {rate: DataCollatorForMLM(small_tokenizer, mlm_probability=rate) for rate in (0.15, 0.4)}
    cfg = TrainingConfig(max_steps=1, batch_size=16, eval_blocks=64, progress=False, device="cpu")
    shares = {}
    for name, eval_collator in (("own", None), ("fixed", at[0.15])):
        trainer = Trainer(model, blocks, at[0.4], cfg, blocks, eval_collator=eval_collator)
        labels = torch.cat([b["labels"] for b in trainer.eval_batches])
        shares[name] = (labels != -100).float().mean().item()
    assert shares["own"] == pytest.approx(0.4, abs=0.03) and shares["fixed"] == pytest.approx(0.15, abs=0.02)


def test_combination_and_budget_bookkeeping():
    # catches: a change counted as helping when its loss is higher, the budget scaled the wrong way round
    settings = experiments.AblationExperiment(changes=("pre-LN", "RoPE"), mask_rates=(0.3, 0.4))
    run = lambda loss: [{"eval": [{"loss": 9.0}, {"loss": loss}]}]  # noqa: E731
    runs = {"RoBERTa": run(5.0), "pre-LN": run(4.9), "RoPE": run(5.1), "masking 30%": run(4.8),
            "masking 40%": run(5.2)}
    assert experiments.choose_combination(runs, settings) == (("pre-LN",), 0.3)
    steps = experiments.budget_steps({"RoBERTa": 1000.0, "fast": 1500.0, "slow": 500.0}, 300)
    assert steps == {"RoBERTa": 300, "fast": 450, "slow": 150}
    glitch = experiments.budget_steps({"RoBERTa": 100.0, "timed while the machine was busy": 10.0, "odd": 900.0}, 300)
    assert glitch == {"RoBERTa": 300, "timed while the machine was busy": 150, "odd": 600}
    glu = experiments.arm_config(config(), ("GeGLU", "dropout off"))
    assert glu.intermediate_size == glu_intermediate_size(512) and glu.hidden_dropout_prob == 0.0
    with pytest.raises(ValueError, match="unknown change 'ALiBi'"):
        experiments.arm_config(config(), ("ALiBi",))


def test_the_ladder_gives_each_arm_its_budget_and_repeats_exactly(small_tokenizer, monkeypatch):
    # catches: an arm trained for the baseline's steps whatever its speed, the combination not the one the runs
    # suggest, downstream runs of the wrong arms, or a run that does not repeat for its seed
    speeds = {"RoBERTa": 1000.0, "RoPE": 750.0, "masking 40%": 1250.0, "best combination": 500.0}
    monkeypatch.setattr(experiments, "measure_throughput",
                        lambda baseline, arms, *args, **kwargs: {name: speeds[name] for name in arms})
    settings = experiments.AblationExperiment(baseline_steps=4, batch_size=8, seeds=(0,), changes=("RoPE",),
                                              mask_rates=(0.4,), evaluations=2, finetune_seeds=(0,))
    g = torch.Generator().manual_seed(0)
    blocks = [[0, *torch.randint(5, small_tokenizer.vocab_size, (30,), generator=g).tolist(), 2] for _ in range(40)]
    base = config(vocab_size=small_tokenizer.vocab_size, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    finetuned = []

    def downstream(directory, seed):
        finetuned.append(json.loads((directory / "config.json").read_text())["model_type"])
        return {"test": {"accuracy": 0.5}}

    results = [experiments.run_ablation(base, small_tokenizer, blocks, blocks[:16], settings, downstream=downstream)
               for _ in range(2)]
    result = results[0]
    assert result["steps"] == {"RoBERTa": 4, "RoPE": 3, "masking 40%": 5, "best combination": 2}
    assert all(run["eval"][-1]["step"] == result["steps"][name] for name, runs in result["runs"].items()
               for run in runs)
    changes, rate = experiments.choose_combination(result["runs"], settings)
    assert result["combination"] == {"changes": list(changes), "mask_rate": rate}
    assert set(result["downstream"]) == {"RoBERTa", "best combination"}
    assert finetuned[0] == "roberta" and len(finetuned) == 4
    # exact: the same runs again in this process (same seeds, batches, shapes and threads), floats included
    assert json.dumps(results[0]["runs"]) == json.dumps(results[1]["runs"])


@pytest.mark.parametrize("scale", ["smoke", "cpu"])
def test_cached_ladder_comes_from_the_current_settings(scale):
    # catches: notebook 11 showing a ladder that the code no longer makes (other settings, another baseline model,
    # steps that do not follow from the measured speeds, a combination the runs do not suggest), or one without
    # the command that made it
    result = experiments.load_ablation_result(scale)
    assert result is not None, f"run `python -m roberta_from_scratch experiments beyond-roberta --scale {scale}`"
    full = experiments.ABLATION[scale]["full"]
    assert result["settings"] == experiments.settings_dict(full)
    assert result["recipe"] == experiments.recipe_dict(scale)
    assert result["baseline"] == experiments.ablation_baseline(scale).to_dict()
    assert set(result["runs"]) == {*experiments.ablation_arms(full), experiments.COMBINATION}
    assert result["steps"] == experiments.budget_steps(result["throughput"], full.baseline_steps)
    for name, runs in result["runs"].items():
        assert [run["seed"] for run in runs] == list(full.seeds)
        assert all(run["eval"][-1]["step"] == result["steps"][name] for run in runs)
    changes, rate = experiments.choose_combination(result["runs"], full)
    assert result["combination"] == {"changes": list(changes), "mask_rate": rate}
    for name in (experiments.BASELINE, experiments.COMBINATION):
        assert [run["seed"] for run in result["downstream"][name]] == list(full.finetune_seeds)
    assert result["command"].endswith(f"beyond-roberta --scale {scale}")


def test_a_probe_on_a_pre_ln_encoder_freezes_its_final_norm():
    # catches: pre-LN's final LayerNorm left trainable in a probe (the encoder would not be frozen)
    from roberta_from_scratch.finetuning import freeze

    model = RobertaForSequenceClassification(config(norm_position="pre"))
    freeze(model, 0)
    assert not any(p.requires_grad for p in model.roberta.parameters())
    freeze(model, 1)
    assert all(p.requires_grad for p in model.roberta.final_norm.parameters())
