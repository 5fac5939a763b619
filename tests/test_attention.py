"""Attention against PyTorch's own: F.scaled_dot_product_attention and nn.MultiheadAttention, outputs and grads."""

import pytest
import torch
import torch.nn.functional as F

from roberta_from_scratch.attention import MultiHeadSelfAttention, attention, expand_mask

# Ours against PyTorch's kernels (nn.MultiheadAttention, SDPA): the same formula in another order and blocking, in
# fp32 (eps 1.2e-7). The rounding is absolute, of the size of the terms summed (1 to 10 here, 7-21 of them), so a
# small output can be off by more than 1e-6 of itself: seen up to 1.4e-6 (1.2 times a 1e-6 tolerance) with MKL's
# compatible path and the default ATen kernels (as on a CPU without AVX-512). 1e-5 leaves 7x room; a masking or
# scaling mistake moves outputs by 1e-2 and more.
TOL = {"rtol": 1e-5, "atol": 1e-5}


def padded_mask(lengths, tokens):
    return (torch.arange(tokens)[None, :] < torch.tensor(lengths)[:, None]).long()


@pytest.fixture
def mha():
    torch.manual_seed(0)
    return MultiHeadSelfAttention(hidden_size=32, num_heads=4).eval()


def to_torch_mha(ours: MultiHeadSelfAttention) -> torch.nn.MultiheadAttention:
    ref = torch.nn.MultiheadAttention(ours.hidden_size, ours.num_heads, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.query.weight, ours.key.weight, ours.value.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.query.bias, ours.key.bias, ours.value.bias]))
        ref.out_proj.weight.copy_(ours.output.weight)
        ref.out_proj.bias.copy_(ours.output.bias)
    return ref


@pytest.mark.parametrize("lengths", [None, [7, 3, 1], [7, 7, 7]])
def test_equal_to_torch_multihead_attention_with_gradients(mha, lengths):
    torch.manual_seed(1)
    x = torch.randn(3, 7, 32, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    mask = None if lengths is None else padded_mask(lengths, 7)
    ref = to_torch_mha(mha)
    for output_attentions in (False, True):
        out, weights = mha(x, attention_mask=mask, output_attentions=output_attentions)
        want, want_weights = ref(x_ref, x_ref, x_ref, key_padding_mask=None if mask is None else mask == 0,
                                 need_weights=True, average_attn_weights=False)
        torch.testing.assert_close(out, want, **TOL)
        if output_attentions:
            torch.testing.assert_close(weights, want_weights, **TOL)
        grad = torch.randn_like(out)
        x.grad = x_ref.grad = None
        mha.zero_grad()
        ref.zero_grad()
        out.backward(grad)
        want.backward(grad)
        torch.testing.assert_close(x.grad, x_ref.grad, **TOL)
        torch.testing.assert_close(mha.query.weight.grad, ref.in_proj_weight.grad[:32], **TOL)
        torch.testing.assert_close(mha.value.bias.grad, ref.in_proj_bias.grad[64:], **TOL)
        torch.testing.assert_close(mha.output.weight.grad, ref.out_proj.weight.grad, **TOL)


@pytest.mark.parametrize("mask_kind", ["none", "padding", "per-query", "per-head"])
def test_explicit_path_equals_sdpa_outputs_and_gradients(mask_kind):
    torch.manual_seed(2)
    q, k, v = (torch.randn(2, 3, 5, 8, requires_grad=True) for _ in range(3))
    masks = {"none": None, "padding": padded_mask([5, 2], 5).bool()[:, None, None, :],
             "per-query": torch.rand(2, 1, 5, 5) > 0.4, "per-head": torch.rand(2, 3, 5, 5) > 0.4}
    keep = masks[mask_kind]
    if keep is not None:
        keep[..., 0] = True  # every query keeps at least one key here; empty rows are tested below
    ours, _ = attention(q, k, v, keep)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    torch.testing.assert_close(ours, ref, **TOL)
    grad = torch.randn_like(ours)
    ours_grads = torch.autograd.grad(ours, (q, k, v), grad)
    ref_grads = torch.autograd.grad(ref, (q, k, v), grad)
    for a, b in zip(ours_grads, ref_grads):
        torch.testing.assert_close(a, b, **TOL)


def test_both_module_paths_agree(mha):
    torch.manual_seed(3)
    x = torch.randn(4, 9, 32)
    mask = padded_mask([9, 5, 2, 0], 9)  # the last sequence is nothing but padding
    fused, none = mha(x, attention_mask=mask)
    explicit, weights = mha(x, attention_mask=mask, output_attentions=True)
    assert none is None and weights.shape == (4, 4, 9, 9)
    torch.testing.assert_close(fused, explicit, **TOL)


def test_weights_rows_sum_to_one_masked_keys_get_exactly_zero_empty_rows_are_finite(mha):
    torch.manual_seed(4)
    x = torch.randn(3, 6, 32) * 30  # large inputs: a sloppy mask would leak weight here
    mask = padded_mask([6, 4, 0], 6)
    out, weights = mha(x, attention_mask=mask, output_attentions=True)
    # six weights, each within a few 1e-8 of its value (float32 near 1): their sum is 1 within 1e-6 on any kernel
    torch.testing.assert_close(weights[:2].sum(-1), torch.ones(2, 4, 6), rtol=0, atol=1e-6)
    assert (weights[1, :, :, 4:] == 0).all()  # exactly zero, not just small: masked_fill writes 0.0 after the softmax
    assert (weights[2] == 0).all()  # a sequence with no real token: no weights at all...
    assert torch.isfinite(out).all()  # ...and no NaN anywhere
    fused, _ = mha(x, attention_mask=mask)
    assert torch.isfinite(fused).all()
    torch.testing.assert_close(fused[2], mha.output.bias.expand(6, 32), **TOL)  # zero attention output + bias


# The SDPA backends that run on a CPU (efficient attention and cuDNN are CUDA-only): parametrized over these alone,
# so nothing skips here.
CPU_SDPA_BACKENDS = ["MATH", "FLASH_ATTENTION"]


@pytest.mark.parametrize("backend", CPU_SDPA_BACKENDS)
def test_every_cpu_sdpa_backend_gives_an_all_masked_row_zero_output_and_zero_gradient(mha, backend):
    """Catches: the fused path's claim (attention.py) that SDPA gives a query whose keys are all masked a zero
    output resting on whichever kernel SDPA happens to pick: each CPU backend alone (sdpa_kernel with one backend
    fails rather than fall back to another), outputs and input gradients against the explicit path."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(6)
    x = torch.randn(3, 6, 32, requires_grad=True)
    mask = padded_mask([6, 4, 0], 6)  # the last sequence is nothing but padding: its every query has no key
    explicit, _ = mha(x, attention_mask=mask, output_attentions=True)
    want_grad, = torch.autograd.grad(explicit, x, torch.ones_like(explicit))
    with sdpa_kernel([getattr(SDPBackend, backend)]):
        fused, none = mha(x, attention_mask=mask)
        grad, = torch.autograd.grad(fused, x, torch.ones_like(fused))
    assert none is None  # the fused path ran
    torch.testing.assert_close(fused[2], mha.output.bias.expand(6, 32), **TOL)  # zero attention output + bias
    torch.testing.assert_close(fused, explicit, **TOL)
    torch.testing.assert_close(grad[2], torch.zeros(6, 32), **TOL)  # the output does not depend on it
    torch.testing.assert_close(grad, want_grad, **TOL)


def test_a_minus_infinity_mask_would_give_nan_on_an_empty_row():
    # Why the dtype's minimum: the same empty row with -inf scores turns into NaN.
    scores = torch.tensor([[1.0, 2.0], [float("-inf"), float("-inf")]])
    assert torch.isnan(scores.softmax(-1)[1]).all()


def test_dropout_only_in_training_and_the_fused_path_uses_it_too():
    torch.manual_seed(5)
    mha = MultiHeadSelfAttention(32, 4, dropout=0.5)
    x = torch.randn(8, 64, 32)  # 2,048 rows of weights: the mean row sum is 1 within about 0.003 (1 sd)
    mha.train()
    _, weights = mha(x, output_attentions=True)
    dropped = (weights == 0).float().mean().item()
    assert 0.4 < dropped < 0.6  # half the weights dropped, the rest scaled by 2
    torch.testing.assert_close(weights.sum(-1).mean(), torch.tensor(1.0), atol=0.02, rtol=0)  # in expectation
    a, _ = mha(x)
    b, _ = mha(x)
    assert not torch.allclose(a, b)
    mha.eval()
    # In eval mode both paths give softmax(Q K^T / sqrt(d)) V, written out here without any dropout, within TOL
    # (1e-5, above; seen 9e-8); dropout left on in eval (p = 0.5) moves outputs by 1e-1 and more.
    with torch.no_grad():
        q, k, v = (mha.split_heads(proj(x)) for proj in (mha.query, mha.key, mha.value))
        plain = ((q @ k.transpose(-2, -1) / mha.head_dim ** 0.5).softmax(-1) @ v).transpose(1, 2).reshape(8, 64, 32)
        want = mha.output(plain)
        for output_attentions in (False, True):
            torch.testing.assert_close(mha(x, output_attentions=output_attentions)[0], want, **TOL)


def test_expand_mask_accepts_the_documented_shapes():
    keep = expand_mask(torch.tensor([[1, 1, 0]]), batch=1, heads=2, queries=3, keys=3)
    assert keep.shape == (1, 1, 1, 3) and keep.dtype == torch.bool
    assert expand_mask(torch.ones(1, 3, 3), 1, 2, 3, 3).shape == (1, 1, 3, 3)
    assert expand_mask(torch.ones(1, 2, 3, 3, dtype=torch.bool), 1, 2, 3, 3).shape == (1, 2, 3, 3)


def test_bad_input_gets_clear_errors(mha):
    with pytest.raises(ValueError, match="hidden_size=30 must be a positive multiple of num_heads=4"):
        MultiHeadSelfAttention(30, 4)
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 5\).*expected \(2, 7\)"):
        mha(torch.randn(2, 7, 32), attention_mask=torch.ones(2, 5))
    with pytest.raises(ValueError, match=r"expected \(batch, tokens, 32\)"):
        mha(torch.randn(2, 7, 16))


def test_parameter_count_is_four_square_matrices_and_biases(mha):
    assert sum(p.numel() for p in mha.parameters()) == 4 * (32 * 32 + 32)

