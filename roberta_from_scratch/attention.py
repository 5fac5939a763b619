"""Scaled dot-product attention and multi-head self-attention (notebook 02).

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + mask) V            (Vaswani et al. 2017, arXiv 1706.03762)

Two paths compute the same thing. The explicit one writes the equation out and can return the attention weights
(for bertviz and head analysis); the fused one calls ``torch.nn.functional.scaled_dot_product_attention`` (SDPA),
which picks a flash or memory-efficient kernel where one exists and never materialises the weights. They agree
within 1e-5 in fp32 (tested; the differences seen are 1e-7 to 1.4e-6, by CPU kernel).

Masks say which keys a query may look at (True or 1 = attend). A masked key gets exactly zero weight. A query whose
keys are all masked (a sequence that is nothing but padding) gets zero weights and a zero output, on both paths,
instead of the NaN that a ``-inf`` mask gives; transformers gives such rows the average of the values, which is
the only place where its outputs and ours differ (those positions are padding and are never read).

Rotary position embeddings (RoPE; Su et al. 2021, arXiv 2104.09864; notebook 11) turn each query and key by an
angle proportional to its position before the scores are taken, so that a score depends on the two tokens and on
how far apart they are, not on where they stand.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def expand_mask(attention_mask: torch.Tensor | None, batch: int, heads: int, queries: int, keys: int
                ) -> torch.Tensor | None:
    """Turn a mask into a boolean ``keep`` tensor that broadcasts against attention scores (batch, heads, q, k).

    Accepted: ``(batch, keys)`` padding masks, as tokenizers return them (the same keys for every query);
    ``(batch, queries, keys)``; ``(batch, 1 or heads, queries, keys)``. Values are booleans or 0/1.
    """
    if attention_mask is None:
        return None
    shape = tuple(attention_mask.shape)
    if shape == (batch, keys):
        keep = attention_mask[:, None, None, :]
    elif shape == (batch, queries, keys):
        keep = attention_mask[:, None, :, :]
    elif attention_mask.dim() == 4 and shape[0] == batch and shape[1] in (1, heads) and shape[2:] == (queries, keys):
        keep = attention_mask
    else:
        raise ValueError(
            f"attention_mask has shape {shape}, which does not fit this input: expected ({batch}, {keys}) "
            f"(1 = attend, 0 = padding), ({batch}, {queries}, {keys}) or ({batch}, 1 or {heads}, {queries}, {keys})"
        )
    return keep if keep.dtype == torch.bool else keep != 0


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor | None = None,
              dropout: float = 0.0, training: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The explicit path: scores, mask, softmax, dropout, weighted sum. Returns (output, weights).

    ``q``, ``k``, ``v``: (..., tokens, head_dim). ``keep``: boolean, broadcastable to the scores, True = attend.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if keep is not None:
        # The dtype's most negative number rather than -inf: exp() of it is exactly 0 next to any real score, and a
        # row with no key left gives no NaN. Such a row would spread its weight evenly over padding; we zero it.
        scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
    weights = scores.softmax(dim=-1)
    if keep is not None:
        weights = weights.masked_fill(~keep, 0.0)
    weights = F.dropout(weights, p=dropout, training=training)
    return weights @ v, weights


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension: a quarter turn of each pair (x1[i], x2[i])."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class RotaryEmbedding(nn.Module):
    """RoPE: pair ``i`` of a head's dimensions (``i`` and ``i + head_dim / 2``, the half-split layout of GPT-NeoX
    and transformers; the paper pairs neighbours, which is the same up to an order of the dimensions) turns by
    ``position * theta ** (-2i / head_dim)``. No weights, and no buffer: the frequencies are computed in fp32 at
    each call, so ``model.to(torch.bfloat16)`` cannot round them (frequencies in a bf16 buffer put cosines up to
    0.22 off below position 512)."""

    def __init__(self, head_dim: int, theta: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"head_dim={head_dim}: rotary positions turn pairs of dimensions, so it must be even")
        self.head_dim, self.theta = head_dim, theta

    def inv_freq(self, device=None) -> torch.Tensor:
        """theta ** (-2i / head_dim) for each pair i, in fp32."""
        return self.theta ** (-torch.arange(0, self.head_dim, 2, dtype=torch.float32, device=device) / self.head_dim)

    def angles(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of every (position, dimension), (tokens, head_dim) each, in fp32."""
        freqs = positions.float()[:, None] * self.inv_freq(positions.device)[None, :]  # (tokens, head_dim / 2)
        freqs = torch.cat((freqs, freqs), dim=-1)
        return freqs.cos(), freqs.sin()

    def forward(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotate ``q`` and ``k`` (..., tokens, head_dim); ``positions`` default to 0, 1, ..., tokens - 1."""
        if positions is None:
            positions = torch.arange(q.size(-2), device=q.device)
        cos, sin = self.angles(positions)
        return tuple((x.float() * cos + rotate_half(x.float()) * sin).to(x.dtype) for x in (q, k))


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention with RoBERTa's layout: separate query, key and value projections and an output
    projection, each ``nn.Linear(hidden_size, hidden_size)``, so transformers' weights map one to one
    (``attention.self.{query,key,value}`` and ``attention.output.dense``). ``rotary``: a RotaryEmbedding that
    turns the queries and keys (notebook 11)."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 rotary: RotaryEmbedding | None = None):
        super().__init__()
        if num_heads <= 0 or hidden_size <= 0 or hidden_size % num_heads:
            raise ValueError(f"hidden_size={hidden_size} must be a positive multiple of num_heads={num_heads} "
                             f"(each head gets hidden_size / num_heads dimensions)")
        self.hidden_size, self.num_heads, self.head_dim = hidden_size, num_heads, hidden_size // num_heads
        self.dropout = dropout
        self.query = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.key = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.value = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.output = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.rotary = rotary

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, tokens, hidden) -> (batch, heads, tokens, head_dim)."""
        batch, tokens, _ = x.shape
        return x.view(batch, tokens, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None, output_attentions: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x``: (batch, tokens, hidden_size). Returns the output and, with ``output_attentions``, the weights
        (batch, heads, tokens, tokens); otherwise None and the fused SDPA kernel does the work."""
        if x.dim() != 3 or x.size(-1) != self.hidden_size:
            raise ValueError(f"x has shape {tuple(x.shape)}: expected (batch, tokens, {self.hidden_size})")
        batch, tokens, _ = x.shape
        keep = expand_mask(attention_mask, batch, self.num_heads, tokens, tokens)
        q, k, v = (self.split_heads(proj(x)) for proj in (self.query, self.key, self.value))
        if self.rotary is not None:
            q, k = self.rotary(q, k)
        p = self.dropout if self.training else 0.0
        if output_attentions:
            out, weights = attention(q, k, v, keep, dropout=p, training=self.training)
        else:
            # A boolean mask: SDPA (torch >= 2.5) gives zero output for a query with no key left, as we do.
            out, weights = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=p), None
        out = out.transpose(1, 2).reshape(batch, tokens, self.hidden_size)
        return self.output(out), weights
