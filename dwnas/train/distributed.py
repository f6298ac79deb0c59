"""torchrun support: process group from the environment, rank-0-only side effects, gradient averaging.

Gradients are averaged by hand after all of a step's backward passes instead of wrapping the model
in DDP: a sandwich step runs several subnets that use different subsets of the weights, which DDP's
one-backward-per-step bucketing does not fit. Every rank samples the same subnets (seeded by the
global step) on its share of the global batch. The result is close to, not equal to, a single
process on the global batch: BatchNorm normalises each rank's images with that rank's own
statistics (docs/training.md gives the measured distance; tests/test_slurm.py bounds it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistContext:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistContext:
        """Join the process group torchrun describes (WORLD_SIZE > 1), else run single-process."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        cuda = torch.cuda.is_available()
        if world > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if cuda else "gloo")
        rank = dist.get_rank() if dist.is_initialized() else 0
        world = dist.get_world_size() if dist.is_initialized() else 1
        if cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        else:
            device = torch.device("cpu")
        return cls(rank, world, device)

    def broadcast_parameters(self, model: nn.Module) -> None:
        """Start every rank from rank 0's weights and buffers."""
        if self.world_size > 1:
            for tensor in list(model.parameters()) + list(model.buffers()):
                dist.broadcast(tensor.data, src=0)

    def average_gradients(self, model: nn.Module) -> None:
        if self.world_size == 1:
            return
        params = [p for p in model.parameters() if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for param, grad in zip(params, grads, strict=True):
            n = grad.numel()
            param.grad = flat[offset:offset + n].view_as(grad).clone()
            offset += n

    def all_finite(self, value: torch.Tensor) -> bool:
        """True when ``value`` is finite on every rank (so all ranks stop together)."""
        ok = torch.tensor([1.0 if bool(torch.isfinite(value).all()) else 0.0], device=self.device)
        if self.world_size > 1:
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        return bool(ok.item() == 1.0)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()
