"""Batches (notebooks 05 and 06): which examples each optimizer step takes, and padding them into tensors.

Pretraining and finetuning share one rule: step ``s`` takes a slice of an epoch's shuffle, a pure function of
(seed, step), so a resumed run needs only its step to continue with the same data. ``collate`` pads the encoded
examples of classification, tagging and question answering.
"""

from __future__ import annotations

import torch

from .config import IGNORE_INDEX


class StepBatches:
    """The examples of optimizer step ``s``: epoch ``e = s // steps_per_epoch`` shuffles the blocks with seed
    ``seed + e``; step ``s`` takes its slice. A pure function of (seed, step): resuming needs only the step."""

    def __init__(self, blocks, batch_size: int, seed: int):
        self.blocks = blocks
        self.batch_size, self.seed = batch_size, seed
        self.steps_per_epoch = max(1, len(blocks) // batch_size)  # the incomplete last batch is dropped
        if len(blocks) < batch_size:
            raise ValueError(f"{len(blocks)} training blocks cannot fill one batch of {batch_size}: use a smaller "
                             "batch or more data")
        self._order: tuple[int, torch.Tensor] | None = None

    def __call__(self, step: int) -> list:
        epoch, index = divmod(step, self.steps_per_epoch)
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, torch.randperm(len(self.blocks), generator=torch.Generator().manual_seed(
                self.seed * 100_003 + epoch)))
        picked = self._order[1][index * self.batch_size:(index + 1) * self.batch_size].tolist()
        return [self.blocks[i] for i in picked]


def step_generator(seed: int, step: int) -> torch.Generator:
    """The masking random stream of one step (so masks do not depend on how the run was interrupted)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step + 1)


class StepBatchDataset(torch.utils.data.Dataset):
    """Item ``s`` is step ``s``'s whole batch, gathered and masked: a pure function of (seed, step), so DataLoader
    workers that build steps ahead, in any process and any order, give exactly the batches of the main process,
    and a resumed run starts its loader at its step."""

    def __init__(self, batches: StepBatches, collator, seed: int, max_steps: int):
        self.batches, self.collator, self.seed, self.max_steps = batches, collator, seed, max_steps

    def __len__(self) -> int:
        return self.max_steps

    def __getitem__(self, step: int) -> dict:
        return self.collator(self.batches(step), generator=step_generator(self.seed, step))


def collate(examples: list[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch of encoded examples. An example carries one of: ``label`` (a class or score per sequence),
    ``labels`` (one per token, padded with the ignore index), or ``start_positions`` and ``end_positions`` (an
    answer span)."""
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, : len(e["input_ids"])] = torch.tensor(e["input_ids"])
        mask[i, : len(e["input_ids"])] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    first = examples[0]
    if "label" in first:
        batch["labels"] = torch.tensor([e["label"] for e in examples])  # float for regression
    elif "labels" in first:
        labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
        for i, e in enumerate(examples):
            labels[i, : len(e["labels"])] = torch.tensor(e["labels"])
        batch["labels"] = labels
    elif "start_positions" in first:
        batch["start_positions"] = torch.tensor([e["start_positions"] for e in examples])
        batch["end_positions"] = torch.tensor([e["end_positions"] for e in examples])
    return batch
