"""Seekable sample streams: the k-th sample is a pure function of (seed, k).

A run that resumes at step s starts reading at s x global_batch_size without replaying anything,
and every rank computes its own slice of the same global stream. torch's DistributedSampler cannot
seek inside an epoch, and no library offers a seekable weighted mixture, hence this module.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from typing import Any

import soundfile
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


def apportion(shares: Sequence[float], n: int) -> list[int]:
    """n positions split by `shares` (summing to 1) with Hamilton's largest remainders: each group
    gets floor(share x n) and the largest fractional parts one more, so every count is within 1 of
    share x n and the counts sum to n."""
    exact = [share * n for share in shares]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(shares)), key=lambda g: (counts[g] - exact[g], g))
    for group in by_remainder[: max(0, n - sum(counts))]:
        counts[group] += 1
    return counts


class MixtureStream:
    """Weighted mixture of groups (SFT chat vs analysis, tasks, data.mixture's sources).

    cycle=False (task weights, the chat share): sample k picks a group with probability
    proportional to its weight, then an example of that group uniformly, both from Random((seed, k)).

    cycle=True (data.mixture): positions are dealt out in blocks of `block`. Up to the end of each
    block every group has had `apportion(shares, end)` positions (within one of its share), and
    within a block they are shuffled by (seed, block). A group's j-th draw is element j of its own
    EpochStream: each group is read in shuffled passes, every example once per pass. A block is
    at least 1 / (smallest share) long, so every group's count grows from block to block, and the
    draws of a group before any block are known without counting: sample k is still a pure function
    of (seed, k), computed from one block.
    """

    MIN_BLOCK = 1024

    def __init__(
        self,
        groups: Sequence[Sequence[int]],
        weights: Sequence[float],
        seed: int,
        cycle: bool = False,
    ) -> None:
        kept = [(list(g), w) for g, w in zip(groups, weights, strict=True) if w > 0]
        if not kept or any(not g for g, _ in kept):
            raise ValueError("every group with a positive weight needs examples")
        self.groups = [g for g, _ in kept]
        self.weights = [w for _, w in kept]
        self.seed, self.cycle = seed, cycle
        total = sum(self.weights)
        self.shares = [w / total for w in self.weights]
        self.block = max(self.MIN_BLOCK, math.ceil(1.0 / min(self.shares)) + 1)
        self.passes = [EpochStream(len(g), seed * 7919 + i) for i, g in enumerate(self.groups)]
        self._block_index, self._dealt = -1, list[tuple[int, int]]()

    def __getitem__(self, k: int) -> int:
        if self.cycle:
            group, draw = self._deal(k)
            return self.groups[group][self.passes[group][draw]]
        rng = random.Random(f"{self.seed}:{k}")
        members = rng.choices(self.groups, weights=self.weights)[0]
        return members[rng.randrange(len(members))]

    def _deal(self, k: int) -> tuple[int, int]:
        """(group, how many draws that group had before position k) for cycle=True."""
        index, offset = divmod(k, self.block)
        if index != self._block_index:
            before = apportion(self.shares, index * self.block)
            after = apportion(self.shares, (index + 1) * self.block)
            labels = [g for g in range(len(self.groups)) for _ in range(after[g] - before[g])]
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
            order = torch.randperm(len(labels), generator=generator).tolist()
            seen, dealt = list(before), []
            for position in order:
                group = labels[position]
                dealt.append((group, seen[group]))
                seen[group] += 1
            self._block_index, self._dealt = index, dealt
        return self._dealt[offset]


# Rough tokens per unit of a record, for ordering only: the encoder gives 25 tokens per second of
# audio (Qwen2-Audio), and byte-level BPE averages a few characters per token.
AUDIO_TOKENS_PER_SECOND = 25.0
CHARS_PER_TOKEN = 3.0
_TEXT_KEYS = ("text", "content", "chosen", "rejected")


def record_cost(record: Any) -> float:
    """Estimated sequence length of a normalised manifest record: its audio tokens plus its text tokens.

    Audio refs without a duration cost what the file's header says (soundfile reads no samples); an
    unreadable file costs nothing here, the collator skips and counts it when it comes up.
    """
    if isinstance(record, list):
        return sum(record_cost(item) for item in record)
    if not isinstance(record, dict):
        return 0.0
    if "path" in record and "duration" in record:  # an audio ref
        duration = record["duration"]
        if duration is None:
            try:
                duration = soundfile.info(record["path"]).duration - float(record.get("offset") or 0.0)
            except (OSError, RuntimeError):  # unreadable: the collator skips and counts it later
                duration = 0.0
        return AUDIO_TOKENS_PER_SECOND * float(duration)
    cost = 0.0
    for key, value in record.items():
        if isinstance(value, str):
            cost += len(value) / CHARS_PER_TOKEN if key in _TEXT_KEYS else 0.0
        elif not key.startswith("_"):
            cost += record_cost(value)
    return cost


class LengthGroupedStream:
    """Another stream's samples regrouped so that each global batch holds examples of similar length.

    The base stream's samples are taken `groups` global batches at a time, sorted by cost and cut
    into `groups` global batches, which are then visited in an order drawn from Random((seed, group)).
    So sample k is still a pure function of (seed, k) (a resumed run seeks, nothing is replayed), the
    examples seen per `groups` steps are exactly the base stream's, and padding (audio frames and
    text tokens) shrinks to the spread inside one batch. Within a global batch the samples are in
    ascending cost, so each rank's micro-batch is a contiguous, even tighter slice. transformers'
    group_by_length does the same for one epoch at a time and cannot seek, hence this class.
    """

    def __init__(
        self,
        base: EpochStream | MixtureStream,
        costs: Sequence[float],
        global_batch: int,
        groups: int,
        seed: int,
    ) -> None:
        if global_batch <= 0 or groups <= 0:
            raise ValueError(f"global_batch and groups must be positive, got {global_batch}, {groups}")
        self.base, self.costs = base, costs
        self.global_batch, self.groups, self.seed = global_batch, groups, seed
        self._group, self._samples = -1, list[int]()

    def __getitem__(self, k: int) -> int:
        span = self.global_batch * self.groups
        group, offset = divmod(k, span)
        if group != self._group:
            first = group * span
            drawn = [self.base[first + i] for i in range(span)]
            drawn.sort(key=lambda index: (self.costs[index], index))
            order = list(range(self.groups))
            random.Random(f"{self.seed}:length:{group}").shuffle(order)
            batches = [drawn[b * self.global_batch : (b + 1) * self.global_batch] for b in order]
            self._group, self._samples = group, [i for batch in batches for i in batch]
        return self._samples[offset]


class RankBatches(torch.utils.data.Sampler[list[int]]):
    """This rank's micro-batches of a global stream, from optimizer step `start_step` on.

    Global sample g = step * global_batch + micro * (micro_batch * world) + rank * micro_batch + j,
    so the same stream and global batch give the same data whatever the world size. With
    `positions`, each item is (index, g): augmentation draws from the position (lalm.data.augment), so
    an example seen twice is augmented twice differently, and a resumed run redraws the same.
    """

    def __init__(
        self,
        stream: EpochStream | MixtureStream | LengthGroupedStream,
        micro_batch: int,
        accumulation: int,
        rank: int,
        world: int,
        start_step: int = 0,
        num_steps: int | None = None,
        positions: bool = False,
    ) -> None:
        self.stream, self.micro_batch, self.accumulation = stream, micro_batch, accumulation
        self.rank, self.world, self.start_step, self.num_steps = rank, world, start_step, num_steps
        self.positions = positions

    def __iter__(self) -> Iterator[list[Any]]:
        step = self.start_step
        per_micro = self.micro_batch * self.world
        while self.num_steps is None or step < self.start_step + self.num_steps:
            for micro in range(self.accumulation):
                first = (
                    step * per_micro * self.accumulation + micro * per_micro + self.rank * self.micro_batch
                )
                span = range(first, first + self.micro_batch)
                yield (
                    [(self.stream[g], g) for g in span] if self.positions else [self.stream[g] for g in span]
                )
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


def deal_in_order(ranked: Sequence[int], world: int) -> list[int]:
    """`ranked` (e.g. ascending length) reordered so that the contiguous per-rank spans of
    `evaluation_batches` deal it out like cards: every rank's span takes every world-th item, in order,
    so each rank gets short and long items alike and its batches still hold neighbours in the order."""
    per_rank = -(-len(ranked) // world)
    room = [max(0, min(per_rank, len(ranked) - r * per_rank)) for r in range(world)]
    shares: list[list[int]] = [[] for _ in range(world)]
    turn = 0
    for item in ranked:
        while len(shares[turn]) >= room[turn]:  # spans are full-length except at the end
            turn = (turn + 1) % world
        shares[turn].append(item)
        turn = (turn + 1) % world
    return [item for share in shares for item in share]
