"""Process-group set-up and the few collectives the trainer needs (torch.distributed via DeepSpeed)."""

from __future__ import annotations

import os
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def has_gpu() -> bool:
    return torch.cuda.is_available() and os.environ.get("DS_ACCELERATOR", "") != "cpu"


def init_distributed(timeout_s: float | None = None) -> None:
    """Join the torchrun group (nccl on GPUs, gloo on CPU); a plain `python` run becomes a group of one.

    timeout_s bounds the rendezvous and every collective (trainer.collective_timeout_s): a rank that
    never joins one becomes an error on the others instead of a silent hang.
    """
    from datetime import timedelta

    import deepspeed

    if dist.is_initialized():
        return
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(key, value)
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    if has_gpu():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    options = {} if timeout_s is None else {"timeout": timedelta(seconds=timeout_s)}
    deepspeed.init_distributed(dist_backend="nccl" if has_gpu() else "gloo", **options)


def shutdown_distributed(together: bool) -> None:
    """Leave the process group before the interpreter exits: a gloo group torn down by interpreter
    shutdown can abort the process (std::terminate), turning a clean exit code into SIGABRT.

    together: every rank ends here at the same point (a finished run, or an exit the ranks agreed
    on), so a barrier first lets any collective still in flight (gloo runs a group's work in order)
    complete on every rank before the group goes; after a one-rank error a barrier could only hang.
    """
    if not dist.is_initialized():
        return
    if together:
        dist.barrier()
    dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    if dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if has_gpu() else torch.device("cpu")


def all_reduce_sum(values: dict[str, Any], same_keys: bool = False) -> dict[str, float]:
    """Sum each value over ranks. Values are floats or 0-d tensors (left on the device by the step:
    they are read here, once, in the same reduction, so no earlier host sync is needed). Ranks may
    hold different keys (a drop reason seen on one rank only): the union of keys is agreed first (one
    all_gather_object), a key missing on a rank counts 0 there. same_keys=True: the caller guarantees
    every rank has the same keys, and the agreement is skipped."""
    distributed = dist.is_initialized() and dist.get_world_size() > 1
    if not distributed or same_keys:
        keys = sorted(values)
    else:
        key_sets: list[list[str] | None] = [None] * dist.get_world_size()
        dist.all_gather_object(key_sets, sorted(values))
        keys = sorted({key for part in key_sets for key in part or []})
    if not keys:
        return {}
    target = device() if distributed else torch.device("cpu")
    # One vector in `keys` order on every rank: host floats first, device tensors added in place.
    is_tensor = [isinstance(values.get(k), torch.Tensor) for k in keys]
    host = [0.0 if tensor else float(values.get(k, 0.0)) for k, tensor in zip(keys, is_tensor, strict=True)]
    vector = torch.tensor(host, dtype=torch.float64, device=target)
    slots = [i for i, tensor in enumerate(is_tensor) if tensor]
    if slots:
        stacked = torch.stack([values[keys[i]].detach().reshape(()).to(target, torch.float64) for i in slots])
        vector.index_add_(0, torch.tensor(slots, device=target), stacked)
    if distributed:
        dist.all_reduce(vector)
    return dict(zip(keys, vector.tolist(), strict=True))


def from_main(value: T | None) -> T:
    """Rank 0's `value` on every rank (other ranks may pass None): for results that must agree across
    ranks but come from I/O that could fail on one rank only."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        box: list[Any] = [value if is_main() else None]
        dist.broadcast_object_list(box, src=0)
        value = box[0]
    if value is None:
        raise ValueError("from_main: rank 0 passed None")
    return value


def any_rank(flag: bool) -> bool:
    """True on every rank if `flag` is True on any rank (one small all-reduce)."""
    return all_reduce_sum({"flag": float(flag)}, same_keys=True)["flag"] > 0


def all_gather(value: T) -> list[T]:
    """Every rank's `value`, in rank order, on every rank (pickled objects: for rare, small payloads)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [value]
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, value)
    return parts


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
