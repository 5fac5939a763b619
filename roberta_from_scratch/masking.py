"""Masked-language-model corruption, dynamic and static (notebook 04).

BERT's recipe (Devlin et al. 2019, §3.1), kept by RoBERTa: select 15% of the tokens that are not special; replace
80% of the selected with <mask>, 10% with a random token, and keep 10% unchanged; the model must predict the
original token at every selected position (labels), and nothing elsewhere (label -100). The kept and random 10%
stop the model from learning that only <mask> positions matter.

RoBERTa's change (Liu et al. 2019, §4.1) is *when* the mask is drawn: BERT masked once in preprocessing (static,
with the data duplicated 10 times to get 10 masks per sequence); RoBERTa draws a new mask every time a sequence is
fed (dynamic). ``DataCollatorForMLM`` is the dynamic version, called on every batch; ``StaticMaskingDataset`` is
the static one, for the comparison.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset, get_worker_info

from .config import IGNORE_INDEX


def special_ids_of(tokenizer) -> list[int]:
    """The ids never selected for masking: the tokenizer's special tokens (ours, or a transformers tokenizer)."""
    if hasattr(tokenizer, "special_ids"):
        return sorted(tokenizer.special_ids)
    return sorted(set(tokenizer.all_special_ids))


def mask_tokens(input_ids: torch.Tensor, special: torch.Tensor, mask_token_id: int, replacement_ids: torch.Tensor,
                mlm_probability: float = 0.15, mask_replace_prob: float = 0.8, random_replace_prob: float = 0.1,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt a batch for MLM, all positions at once. Returns (corrupted ids, labels).

    ``special``: True where a token may never be selected (special tokens and padding). ``replacement_ids``: the
    ids random replacements are drawn from (the non-special vocabulary).
    """
    probability = torch.full(input_ids.shape, mlm_probability)
    probability.masked_fill_(special, 0.0)
    selected = torch.bernoulli(probability, generator=generator).bool()
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    # One uniform draw per position decides its fate: [0, 0.8) mask, [0.8, 0.9) random, [0.9, 1) keep.
    fate = torch.rand(input_ids.shape, generator=generator)
    to_mask = selected & (fate < mask_replace_prob)
    to_random = selected & (fate >= mask_replace_prob) & (fate < mask_replace_prob + random_replace_prob)
    corrupted = input_ids.clone()
    corrupted[to_mask] = mask_token_id
    picks = torch.randint(len(replacement_ids), (int(to_random.sum()),), generator=generator)
    corrupted[to_random] = replacement_ids[picks]
    return corrupted, labels


class DataCollatorForMLM:
    """A list of examples -> padded ``input_ids``, ``attention_mask`` and freshly masked ``labels``.

    Examples are lists of ids, tensors, or dicts with ``input_ids`` (packed blocks, or tokenized texts). Examples
    that already carry ``labels`` (a static dataset) are padded, not masked again. An example longer than
    ``max_length`` is cut to it, keeping its final token (``</s>``). ``seed`` makes the masks reproducible; in
    DataLoader workers each worker draws from its own stream, seeded from the DataLoader's.
    """

    def __init__(self, tokenizer, mlm_probability: float = 0.15, mask_replace_prob: float = 0.8,
                 random_replace_prob: float = 0.1, pad_to_multiple_of: int | None = None,
                 max_length: int | None = None, seed: int | None = None):
        if not 0.0 < mlm_probability < 1.0:
            raise ValueError(f"mlm_probability={mlm_probability} must be in (0, 1), e.g. 0.15")
        keep = 1.0 - mask_replace_prob - random_replace_prob
        if min(mask_replace_prob, random_replace_prob) < 0 or keep < -1e-9:
            raise ValueError(f"mask_replace_prob={mask_replace_prob} and random_replace_prob={random_replace_prob} "
                             "must be non-negative and sum to at most 1 (the rest of the selected tokens are kept)")
        mask_id = getattr(tokenizer, "mask_token_id", None)
        if mask_id is None:
            raise ValueError("the tokenizer has no mask token: MLM needs one (<mask>); train the tokenizer with the "
                             "default special tokens")
        if pad_to_multiple_of is not None and pad_to_multiple_of <= 0:
            raise ValueError(f"pad_to_multiple_of={pad_to_multiple_of} must be a positive integer or None")
        self.mlm_probability, self.mask_replace_prob, self.random_replace_prob = (
            mlm_probability, mask_replace_prob, random_replace_prob)
        self.mask_token_id, self.pad_token_id = mask_id, tokenizer.pad_token_id
        self.pad_to_multiple_of, self.max_length = pad_to_multiple_of, max_length
        specials = special_ids_of(tokenizer)
        vocab_size = len(tokenizer)
        is_special = torch.zeros(vocab_size, dtype=torch.bool)
        is_special[specials] = True
        self.is_special = is_special
        self.replacement_ids = torch.arange(vocab_size)[~is_special]
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self._worker = None

    def generator(self) -> torch.Generator | None:
        info = get_worker_info()
        if info is not None and self._worker != info.id:  # a fresh stream per DataLoader worker
            self._worker = info.id
            self._generator = torch.Generator().manual_seed(info.seed)
        return self._generator

    def pad(self, examples: Sequence) -> dict[str, torch.Tensor]:
        """Pad ids (and labels, if the examples have them) on the right; build the attention mask."""
        if len(examples) == 0:
            raise ValueError("empty batch: the collator needs at least one example")
        rows, label_rows = [], []
        for k, example in enumerate(examples):
            ids = example["input_ids"] if isinstance(example, dict) else example
            ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
            if not ids:
                raise ValueError(f"example {k} is empty")
            labels = example.get("labels") if isinstance(example, dict) else None
            if labels is not None:
                labels = labels.tolist() if isinstance(labels, torch.Tensor) else list(labels)
            if self.max_length is not None and len(ids) > self.max_length:
                ids = ids[: self.max_length - 1] + ids[-1:]
                labels = None if labels is None else labels[: self.max_length - 1] + labels[-1:]
            rows.append(ids)
            label_rows.append(labels)
        width = max(map(len, rows))
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, ids in enumerate(rows):
            row = torch.tensor(ids)
            if row.is_floating_point() or row.is_complex() or row.dtype == torch.bool:
                raise TypeError(f"example {i} holds {row.dtype} values: token ids must be integers")
            input_ids[i, : len(ids)] = row
            attention_mask[i, : len(ids)] = 1
        vocab_size = len(self.is_special)
        if int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab_size:
            bad = input_ids[(input_ids < 0) | (input_ids >= vocab_size)][0].item()
            raise ValueError(f"id {bad} is outside the tokenizer's vocabulary (0 to {vocab_size - 1}): were these "
                             "blocks made with another tokenizer? Pack them again with this one")
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if any(labels is not None for labels in label_rows):
            labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
            for i, row in enumerate(label_rows):
                if row is None:
                    raise ValueError("some examples carry labels and some do not: mix static and dynamic batches "
                                     "in separate collators")
                labels[i, : len(row)] = torch.tensor(row)
            batch["labels"] = labels
        return batch

    def __call__(self, examples: Sequence, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Pad and mask. ``generator`` overrides the collator's own random stream for this call."""
        batch = self.pad(examples)
        if "labels" in batch:  # already masked (static masking): only padded
            return batch
        special = self.is_special[batch["input_ids"]] | (batch["attention_mask"] == 0)
        batch["input_ids"], batch["labels"] = mask_tokens(
            batch["input_ids"], special, self.mask_token_id, self.replacement_ids, self.mlm_probability,
            self.mask_replace_prob, self.random_replace_prob, generator=generator or self.generator())
        return batch


class StaticMaskingDataset(Dataset):
    """BERT's static masking: each example is masked ``duplicates`` times once, up front, and those masks are
    reused every epoch (BERT: 10 copies over 40 epochs, so each mask is seen 4 times). Item ``i`` is copy
    ``i % duplicates`` of example ``i // duplicates``; reading it twice gives the same mask."""

    def __init__(self, examples: Sequence, collator: DataCollatorForMLM, duplicates: int = 10, seed: int = 0):
        if duplicates < 1:
            raise ValueError(f"duplicates={duplicates} must be at least 1")
        generator = torch.Generator().manual_seed(seed)
        self.items = []
        for example in examples:
            padded = collator.pad([example])
            ids = padded["input_ids"][0]
            special = collator.is_special[ids]
            for _ in range(duplicates):
                corrupted, labels = mask_tokens(ids, special, collator.mask_token_id, collator.replacement_ids,
                                                collator.mlm_probability, collator.mask_replace_prob,
                                                collator.random_replace_prob, generator=generator)
                self.items.append({"input_ids": corrupted, "labels": labels})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index]
