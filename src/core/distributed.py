"""DistributedDataParallel plumbing for `torchrun --nproc_per_node=N [--nnodes ...] -m src.stages.train`.

Without torchrun (WORLD_SIZE unset or 1) every helper is a no-op, so the single-process
path stays plain. With it: NCCL on GPUs, gloo on CPU; each rank trains on its shard of
every global batch; metrics are gathered so all ranks take the same decisions; only rank 0
writes files. Several nodes need a shared file system for output/ (checkpoints, cache).
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def enabled() -> bool:
    return world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def init(device_name: str) -> str:
    """Start the process group once; returns the device this rank should use."""
    if not enabled():
        return device_name
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return "cpu"


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def main_first(fn):
    """fn() on rank 0, then on the other ranks once rank 0 is done (it builds a shared cache they
    then read). Each rank calls fn() exactly once; without DDP that is a plain call."""
    result = fn() if is_main() else None
    barrier()
    return result if is_main() else fn()


def all_gather(obj) -> list:
    """[obj of rank 0, obj of rank 1, ...]; [obj] without DDP."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj):
    """Rank 0's obj on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
