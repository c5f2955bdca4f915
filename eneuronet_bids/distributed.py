"""Training on several processes (GPUs, or nodes) launched by ``torchrun``, with
DistributedDataParallel: NCCL on CUDA, gloo on CPU. A plain ``run.py … train`` is one process
and needs none of this."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Group:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 alone validates, logs, checkpoints and exports."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1:
            dist.destroy_process_group()


def join(device_type: str) -> Group:
    """Join the process group torchrun described in the environment (WORLD_SIZE, RANK,
    LOCAL_RANK, MASTER_ADDR/PORT); a single process when there is none."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Group()
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return Group(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))


def wrap(model: torch.nn.Module, group: Group, device: torch.device) -> torch.nn.Module:
    """The module to call for training steps: DDP (which also copies rank 0's initial
    weights to every rank) when there are several processes."""
    if group.world == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
