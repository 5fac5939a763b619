"""Training on several processes with PyTorch's own engine (notebook 08): torchrun, DDP and FSDP.

    torchrun --nproc_per_node=4 -m roberta_from_scratch pretrain --scale gpu --output-dir runs/ddp
    torchrun --nproc_per_node=4 -m roberta_from_scratch pretrain ... --fsdp      # shard weights, grads, Adam

torchrun starts one process per device and tells each its ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``;
:func:`init_distributed` joins them into a process group (NCCL between CUDA GPUs, gloo on CPUs). The trainer then
splits every optimizer step's batch into disjoint slices, one per rank, so ``--batch-size`` stays the *global* batch:
2 processes x 16 sequences take the same step as 1 process x 32. Gradients are averaged across ranks by
``DistributedDataParallel`` (every rank holds the whole model) or by FSDP's ``fully_shard`` (each rank holds 1/N of
the weights, gradients and optimizer states, and gathers a layer's weights only while it runs).

Checkpoints hold full, unsharded tensors keyed by parameter name, written by rank 0: a run saved by N processes
resumes on M processes (or one), since the data order and the masks are functions of (seed, step) alone.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    group: bool = False  # a process group exists (torchrun), even of one process

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Launched by torchrun: DDP or FSDP wrap the model, even with one process (which is how a one-GPU
        machine tries the multi-GPU path)."""
        return self.group


def world() -> World:
    """This process's place among the processes of the run (one process: rank 0 of 1)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), True)
    return World()


def launched_by_torchrun() -> bool:
    return all(key in os.environ for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def init_distributed(device: str | None = None) -> World:
    """Join the process group that torchrun describes in the environment (a no-op without torchrun).

    Each process uses GPU ``LOCAL_RANK`` with NCCL when CUDA is there (and ``device`` does not say otherwise),
    else the CPU with gloo.
    """
    if not launched_by_torchrun() or dist.is_initialized():
        return world()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local_rank} but this machine has {torch.cuda.device_count()} GPUs: "
                               "set --nproc_per_node to at most the number of GPUs")
        torch.cuda.set_device(local_rank)
        # naming the GPU binds NCCL to it (no guessing the device from the rank, which can hang a run whose ranks
        # map to GPUs unevenly)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank))
    else:
        dist.init_process_group("gloo")
    return world()


def device_for(w: World, device: str | None) -> torch.device | None:
    """The device of this rank: GPU ``LOCAL_RANK`` in a multi-GPU run, else whatever ``device`` says."""
    if w.distributed and torch.cuda.is_available() and (device is None or device.startswith("cuda")):
        return torch.device("cuda", w.local_rank)
    return torch.device(device) if device else None


def close_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if world().distributed:
        dist.barrier()


@contextmanager
def main_first():
    """Rank 0 runs the block first (building a cache, training a tokenizer, downloading), then the other ranks,
    which find the files ready instead of writing them at the same time."""
    w = world()
    if w.distributed and not w.is_main:
        dist.barrier()
    yield
    if w.distributed and w.is_main:
        dist.barrier()


def all_reduce_sum(value, device: torch.device):
    """The sum over processes of a number or of a tensor (a tensor stays on the device: no wait for it)."""
    if not world().distributed:
        return value
    if isinstance(value, torch.Tensor):
        total = value.detach().to(device=device, dtype=torch.float64).reshape(1)
        dist.all_reduce(total)
        return total.reshape(()).to(value.dtype)
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())


def all_gather_objects(value) -> list:
    """Every process's ``value`` (any picklable object), in rank order; ``[value]`` in one plain process."""
    if not world().distributed:
        return [value]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


# ----------------------------------------------------------------------------------------------- wrapping


def wrap_model(model: nn.Module, fsdp: bool, device: torch.device) -> nn.Module:
    """What the training step calls: DDP around the model, or the model sharded in place by ``fully_shard``.

    With FSDP each encoder layer is its own unit (its weights are gathered just before it runs and freed after);
    the root unit holds the embeddings and the MLM head, whose decoder is tied to the token embeddings.
    """
    if not world().distributed:
        return model
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        for layer in model.roberta.layers if hasattr(model, "roberta") else model.layers:
            fully_shard(layer)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


@contextmanager
def gradient_sync(forward: nn.Module, model: nn.Module, sync: bool):
    """Accumulation: skip the all-reduce for every micro-batch but the last one of a step."""
    from torch.nn.parallel import DistributedDataParallel

    ddp = getattr(forward, "_orig_mod", forward)  # torch.compile's module wraps the DDP module
    if isinstance(ddp, DistributedDataParallel) and not sync:
        with ddp.no_sync():
            yield
    elif hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(sync)
        yield
    else:
        yield


# ----------------------------------------------------------------------------------------------- full tensors


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor: gathered from every rank when it is sharded (a collective: every rank must call it)."""
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def like(reference: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """``full`` laid out like ``reference``: sharded the same way when ``reference`` is sharded."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(reference, DTensor):
        return distribute_tensor(full.to(reference.device, reference.dtype), reference.device_mesh,
                                 reference.placements)
    return full.to(reference.device, reference.dtype)


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state with whole tensors on the CPU (gathered under FSDP)."""
    return {k: full_tensor(v).detach().cpu() for k, v in model.state_dict().items()}
