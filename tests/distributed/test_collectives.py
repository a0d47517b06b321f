"""lalm's collectives on 2 real gloo processes: ranks that hold different metric keys still agree."""

from __future__ import annotations

import os
import socket

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from lalm.training.distributed import all_reduce_sum

pytestmark = pytest.mark.distributed


def _worker(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    # Rank 0 dropped an example for a reason rank 1 never saw; rank 1 has a metric rank 0 lacks.
    local = {"loss": 1.0, "dropped/too_long": 2.0} if rank == 0 else {"loss": 3.0, "ctc": 5.0}
    results[rank] = all_reduce_sum(local)
    results[f"same-{rank}"] = all_reduce_sum({"units": float(rank + 1), "tokens": 10.0}, same_keys=True)
    dist.destroy_process_group()


def test_all_reduce_sum_agrees_on_the_union_of_keys():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(port, results), nprocs=2, join=True)
    expected = {"loss": 4.0, "dropped/too_long": 2.0, "ctc": 5.0}
    assert dict(results[0]) == expected and dict(results[1]) == expected
    same = {"units": 3.0, "tokens": 20.0}
    assert dict(results["same-0"]) == same and dict(results["same-1"]) == same
