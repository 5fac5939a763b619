"""Packing (notebook 04): documents split into sentences, tokenized and packed into FULL-SENTENCES blocks, and the
pretraining DataLoader that masks them afresh at every batch.

RoBERTa's FULL-SENTENCES format (Liu et al. 2019, §4.2): each block holds whole sentences, contiguous in the corpus,
across document boundaries (with an extra separator between documents), up to the block length. Loading the corpora
these blocks are made from is :mod:`roberta_from_scratch.data`'s work.
"""

from __future__ import annotations

import hashlib
import re

import datasets

from .data import quiet_datasets

_PARAGRAPH = re.compile(r"\n\s*\n")
# the end of a sentence: ".", "!" or "?", then white space and a capital (or an opening quote or bracket)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(\[`*])")


def split_sentences(text: str) -> list[str]:
    """A document's sentences: paragraphs split at blank lines, lines within a paragraph joined, then split after
    '.', '!' or '?' followed by a capital (or an opening quote or bracket). Crude, and enough for packing: a
    "sentence" is only a unit that is never cut between blocks unless it is longer than a block."""
    sentences = []
    for paragraph in _PARAGRAPH.split(text):
        paragraph = " ".join(paragraph.split())
        sentences += [s for s in SENTENCE_END.split(paragraph) if s]
    return sentences


def pack_full_sentences(documents: list[list[list[int]]], max_len: int, bos_id: int, eos_id: int
                        ) -> list[list[int]]:
    """FULL-SENTENCES packing (Liu et al. 2019, §4.2; fairseq's ``complete`` blocks with document breaks).

    ``documents``: each a list of tokenized sentences (ids without specials). Every block starts with ``<s>`` and
    holds at most ``max_len`` tokens; each sentence is followed by ``</s>``; whole sentences are added while they
    fit, across document boundaries, with one extra ``</s>`` between documents (left out at the start of a block,
    where there is nothing to separate). A sentence longer than a block is split into block-sized pieces.
    """
    if max_len < 3:
        raise ValueError(f"max_len={max_len} must be at least 3 (<s>, one token, </s>)")
    blocks: list[list[int]] = []
    current = [bos_id]

    def add(piece: list[int]) -> None:
        nonlocal current
        if len(current) + len(piece) > max_len:
            blocks.append(current)
            current = [bos_id]
        current += piece

    documents = [[s for s in sentences if s] for sentences in documents]
    documents = [sentences for sentences in documents if sentences]  # an empty document separates nothing
    for d, sentences in enumerate(documents):
        if d > 0 and len(current) > 1:
            if len(current) < max_len:
                current.append(eos_id)  # the extra separator between documents
            else:
                blocks.append(current)  # a full block: the next one starts with the new document
                current = [bos_id]
        for sentence in sentences:
            unit = list(sentence) + [eos_id]
            for i in range(0, len(unit), max_len - 1):  # a sentence longer than a block is split
                add(unit[i:i + max_len - 1])
    if len(current) > 1:
        blocks.append(current)
    return blocks


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of a tokenizer's merges and vocabulary size, to key caches of tokenized data."""
    digest = hashlib.sha256(str(len(tokenizer)).encode())
    for a, b in tokenizer.merges:
        digest.update(f"{a} {b}\n".encode("utf-8"))
    return digest.hexdigest()[:16]


def pack_dataset(dataset: datasets.Dataset, tokenizer, max_len: int, batch_size: int = 1000,
                 fast: bool | None = None) -> datasets.Dataset:
    """Tokenize and pack a ``text`` dataset into blocks (column ``input_ids``), with a batched, cached ``map``.

    Packing runs within each map batch of ``batch_size`` documents (one partly filled block per batch). Above
    20 MB of text the ``tokenizers`` backend encodes (same ids, tested); ``fast`` forces either way. The result is
    cached by ``datasets`` under a fingerprint of the input, the tokenizer and ``max_len``.
    """
    if fast is None:
        fast = dataset.data.nbytes > 20_000_000
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id

    def pack(batch):
        docs = [split_sentences(text) for text in batch["text"]]
        flat = [s for sentences in docs for s in sentences]
        encoded = iter(tokenizer.encode_batch(flat, add_special_tokens=False, fast=fast))
        tokenized = [[next(encoded) for _ in sentences] for sentences in docs]
        return {"input_ids": pack_full_sentences(tokenized, max_len, bos, eos)}

    fingerprint = hashlib.sha256(f"{dataset._fingerprint}-{tokenizer_fingerprint(tokenizer)}-{max_len}-"
                                 f"{batch_size}-v1".encode()).hexdigest()[:16]
    with quiet_datasets():
        return dataset.map(pack, batched=True, batch_size=batch_size, remove_columns=dataset.column_names,
                           new_fingerprint=fingerprint, desc="packing")


def pretraining_dataloader(blocks: datasets.Dataset, collator, batch_size: int, shuffle: bool = True,
                           num_workers: int = 0, device=None, seed: int = 0):
    """The DataLoader recipe for pretraining: shuffled packed blocks, a fresh mask per batch from ``collator``,
    pinned memory on CUDA (faster copies to the GPU), ``num_workers`` processes (each with its own mask stream,
    all seeded from ``seed``)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    pin = device is not None and torch.device(device).type == "cuda"
    return torch.utils.data.DataLoader(blocks.with_format(None), batch_size=batch_size, shuffle=shuffle,
                                       collate_fn=collator, num_workers=num_workers, pin_memory=pin,
                                       generator=generator, persistent_workers=num_workers > 0)
