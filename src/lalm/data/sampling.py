"""Seekable sample streams: the k-th sample is a pure function of (seed, k).

A run that resumes at step s starts reading at s x global_batch_size without replaying anything,
and every rank computes its own slice of the same global stream. torch's DistributedSampler cannot
seek inside an epoch, and no library offers a seekable weighted mixture, hence this module.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch


class EpochStream:
    """Sample k is element k % N of a permutation of range(N) drawn for epoch k // N."""

    def __init__(self, size: int, seed: int) -> None:
        if size <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.size, self.seed = size, seed
        self._epoch, self._order = -1, torch.empty(0, dtype=torch.long)

    def __getitem__(self, k: int) -> int:
        epoch = k // self.size
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._order = epoch, torch.randperm(self.size, generator=generator)
        return int(self._order[k % self.size])


class MixtureStream:
    """Weighted mixture of groups (e.g. SFT chat vs analysis): sample k picks a group with probability
    proportional to its weight, then an example of that group uniformly, both from Random((seed, k))."""

    def __init__(self, groups: Sequence[Sequence[int]], weights: Sequence[float], seed: int) -> None:
        kept = [(list(g), w) for g, w in zip(groups, weights, strict=True) if w > 0]
        if not kept or any(not g for g, _ in kept):
            raise ValueError("every group with a positive weight needs examples")
        self.groups = [g for g, _ in kept]
        self.weights = [w for _, w in kept]
        self.seed = seed

    def __getitem__(self, k: int) -> int:
        rng = random.Random(f"{self.seed}:{k}")
        group = rng.choices(self.groups, weights=self.weights)[0]
        return group[rng.randrange(len(group))]


class RankBatches(torch.utils.data.Sampler[list[int]]):
    """This rank's micro-batches of a global stream, from optimizer step `start_step` on.

    Global sample g = step * global_batch + micro * (micro_batch * world) + rank * micro_batch + j,
    so the same stream and global batch give the same data whatever the world size.
    """

    def __init__(
        self,
        stream: EpochStream | MixtureStream,
        micro_batch: int,
        accumulation: int,
        rank: int,
        world: int,
        start_step: int = 0,
        num_steps: int | None = None,
    ) -> None:
        self.stream, self.micro_batch, self.accumulation = stream, micro_batch, accumulation
        self.rank, self.world, self.start_step, self.num_steps = rank, world, start_step, num_steps

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        per_micro = self.micro_batch * self.world
        while self.num_steps is None or step < self.start_step + self.num_steps:
            for micro in range(self.accumulation):
                first = (
                    step * per_micro * self.accumulation + micro * per_micro + self.rank * self.micro_batch
                )
                yield [self.stream[first + j] for j in range(self.micro_batch)]
            step += 1

    def __len__(self) -> int:
        if self.num_steps is None:
            raise TypeError("an endless stream has no length")
        return self.num_steps * self.accumulation


def evaluation_batches(size: int, micro_batch: int, rank: int, world: int) -> list[list[tuple[int, bool]]]:
    """Every example once, split across ranks; (index, is_real) pairs.

    Every rank gets the same number of batches (ZeRO-3 needs every rank in every forward), so the
    last ranks are padded with repeats of the final example marked is_real=False (weight 0).
    """
    per_rank = -(-size // world)
    span = range(rank * per_rank, (rank + 1) * per_rank)
    pairs = [(min(i, size - 1), i < size) for i in span]
    return [pairs[i : i + micro_batch] for i in range(0, len(pairs), micro_batch)]
