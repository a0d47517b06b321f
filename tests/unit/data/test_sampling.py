"""Seekable sample streams: epochs are permutations, mixtures are pure functions of (seed, k), and
the rank batches of an optimizer step are the same global samples whatever the world size."""

from __future__ import annotations

import random
from collections import Counter
from itertools import islice

import pytest

from lalm.data.sampling import (
    EpochStream,
    LengthGroupedStream,
    MixtureStream,
    RankBatches,
    deal_in_order,
    evaluation_batches,
    record_cost,
)


def _epoch(stream: EpochStream, epoch: int) -> list[int]:
    return [stream[epoch * stream.size + i] for i in range(stream.size)]


# ---------------------------------------------------------------- EpochStream


@pytest.mark.parametrize("size", [1, 2, 7, 50])
def test_every_epoch_is_a_permutation(size):
    stream = EpochStream(size, seed=3)
    for epoch in range(4):
        assert sorted(_epoch(stream, epoch)) == list(range(size))


def test_epochs_are_shuffled_differently():
    stream = EpochStream(50, seed=0)
    epochs = [_epoch(stream, e) for e in range(4)]
    assert len({tuple(e) for e in epochs}) == 4
    assert epochs[0] != list(range(50))  # shuffled, not the identity


def test_same_seed_same_stream_and_other_seed_differs():
    first = [EpochStream(30, seed=5)[k] for k in range(120)]
    again = [EpochStream(30, seed=5)[k] for k in range(120)]
    other = [EpochStream(30, seed=6)[k] for k in range(120)]
    assert first == again
    assert first != other


def test_random_access_equals_sequential_access():
    size, length = 11, 11 * 9
    sequential = [EpochStream(size, seed=2)[k] for k in range(length)]
    order = random.Random(0).sample(range(length), length)  # jumps back and forth between epochs
    stream = EpochStream(size, seed=2)
    assert {k: stream[k] for k in order} == dict(enumerate(sequential))


def test_empty_dataset_is_refused():
    with pytest.raises(ValueError, match="empty"):
        EpochStream(0, seed=0)


# ---------------------------------------------------------------- MixtureStream

GROUPS = [list(range(0, 10)), list(range(100, 110))]


def test_mixture_is_a_pure_function_of_seed_and_k():
    ks = [0, 7, 3, 10**6, 1, 10**9 + 7, 42]
    a = MixtureStream(GROUPS, [0.5, 0.5], seed=4)
    b = MixtureStream(GROUPS, [0.5, 0.5], seed=4)
    from_a = {k: a[k] for k in ks}
    from_b = {k: b[k] for k in reversed(ks)}  # other order, other instance
    assert from_a == from_b
    assert [a[k] for k in range(200)] == [b[k] for k in range(200)]
    other_seed = MixtureStream(GROUPS, [0.5, 0.5], seed=5)
    assert [a[k] for k in range(200)] != [other_seed[k] for k in range(200)]


def test_zero_weight_group_is_never_drawn_and_may_be_empty():
    stream = MixtureStream([[0, 1, 2], [10, 11], [20]], [0.5, 0.0, 0.5], seed=0)
    drawn = Counter(stream[k] for k in range(3000))
    assert set(drawn) == {0, 1, 2, 20}
    only_first = MixtureStream([[3, 4], []], [1.0, 0.0], seed=0)
    assert {only_first[k] for k in range(200)} == {3, 4}


def test_mixture_follows_the_weights():
    stream = MixtureStream(GROUPS, [0.8, 0.2], seed=1)
    draws = [stream[k] for k in range(20_000)]
    fraction_first = sum(d < 100 for d in draws) / len(draws)
    assert abs(fraction_first - 0.8) < 0.02
    # Within a group every example is drawn (uniform choice, so ~1,600 / ~400 draws each).
    assert set(draws) == set(GROUPS[0]) | set(GROUPS[1])


@pytest.mark.parametrize(
    "groups, weights",
    [([[0, 1], []], [0.5, 0.5]), ([[0, 1], [2]], [0.0, 0.0]), ([], [])],
)
def test_mixture_without_examples_to_draw_is_refused(groups, weights):
    with pytest.raises(ValueError, match="needs examples"):
        MixtureStream(groups, weights, seed=0)


# ---------------------------------------------------------------- RankBatches


def test_start_step_seeks_without_replaying():
    stream = EpochStream(37, seed=1)
    full = list(RankBatches(stream, micro_batch=3, accumulation=2, rank=1, world=2, num_steps=10))
    for start in (1, 4, 9):
        tail = RankBatches(
            stream, micro_batch=3, accumulation=2, rank=1, world=2, start_step=start, num_steps=10 - start
        )
        assert list(tail) == full[start * 2 :]


def _global_step_samples(stream, world: int, accumulation: int, micro: int, steps: int) -> list[list[int]]:
    """Per optimizer step, every rank's samples in global order (micro-batch, then rank)."""
    per_rank = [
        list(RankBatches(stream, micro, accumulation, rank=r, world=world, num_steps=steps))
        for r in range(world)
    ]
    return [
        [x for a in range(accumulation) for r in range(world) for x in per_rank[r][s * accumulation + a]]
        for s in range(steps)
    ]


@pytest.mark.parametrize(
    "stream",
    [EpochStream(13, seed=2), MixtureStream([list(range(10)), list(range(50, 53))], [0.7, 0.3], seed=2)],
    ids=["epoch", "mixture"],
)
def test_optimizer_step_data_does_not_depend_on_world_size(stream):
    steps, global_batch = 6, 8
    layouts = [(1, 4, 2), (2, 2, 2), (4, 1, 2)]  # (world, accumulation, micro): 8 samples per step
    results = [_global_step_samples(stream, w, a, m, steps) for w, a, m in layouts]
    expected = [[stream[s * global_batch + i] for i in range(global_batch)] for s in range(steps)]
    for (world, accumulation, micro), result in zip(layouts, results, strict=True):
        assert result == expected, f"world={world} accumulation={accumulation} micro={micro}"


def test_ranks_of_one_step_get_disjoint_stream_positions():
    # Within one epoch of a permutation, different positions are different examples.
    stream = EpochStream(16, seed=0)
    rank_batches = [next(iter(RankBatches(stream, 4, 1, rank=r, world=4))) for r in range(4)]
    assert sorted(x for batch in rank_batches for x in batch) == list(range(16))


def test_len_counts_micro_batches_and_endless_has_none():
    stream = EpochStream(5, seed=0)
    bounded = RankBatches(stream, micro_batch=2, accumulation=3, rank=0, world=2, start_step=7, num_steps=4)
    assert len(bounded) == 12
    assert len(list(bounded)) == 12
    assert all(len(batch) == 2 for batch in bounded)
    endless = RankBatches(stream, micro_batch=2, accumulation=3, rank=0, world=2)
    with pytest.raises(TypeError):
        len(endless)
    assert len(list(islice(endless, 500))) == 500


# ---------------------------------------------------------------- evaluation_batches


@pytest.mark.parametrize(
    "size, micro, world",
    [(10, 3, 1), (10, 3, 2), (10, 4, 3), (16, 4, 4), (7, 2, 4), (2, 1, 4), (1, 2, 3), (5, 5, 2), (9, 2, 8)],
)
def test_evaluation_covers_every_example_once_with_equal_batch_counts(size, micro, world):
    per_rank = [evaluation_batches(size, micro, rank, world) for rank in range(world)]
    assert len({len(batches) for batches in per_rank}) == 1, [len(b) for b in per_rank]
    assert len(per_rank[0]) >= 1
    pairs = [pair for batches in per_rank for batch in batches for pair in batch]
    assert all(0 < len(batch) <= micro for batches in per_rank for batch in batches)
    real = [index for index, is_real in pairs if is_real]
    assert sorted(real) == list(range(size))  # every example exactly once
    assert all(0 <= index < size for index, _ in pairs)  # padding repeats a real example


def test_evaluation_batches_by_example():
    # 7 examples, 2 ranks, micro 2: rank 0 gets 0-3, rank 1 gets 4-6 plus one padding entry.
    assert evaluation_batches(7, 2, 0, 2) == [[(0, True), (1, True)], [(2, True), (3, True)]]
    assert evaluation_batches(7, 2, 1, 2) == [[(4, True), (5, True)], [(6, True), (6, False)]]


# ---------------------------------------------------------------- LengthGroupedStream, record_cost


def _grouped(size: int = 40, global_batch: int = 4, groups: int = 3, seed: int = 1):  # noqa: ANN202
    costs = [float((7 * i) % 23) for i in range(size)]  # lengths in no particular order
    base = EpochStream(size, seed=seed)
    return base, costs, LengthGroupedStream(base, costs, global_batch, groups, seed)


def test_length_groups_keep_the_base_streams_samples_per_group() -> None:
    base, _, grouped = _grouped()
    span = 4 * 3
    for group in range(5):
        window = range(group * span, (group + 1) * span)
        assert sorted(grouped[k] for k in window) == sorted(base[k] for k in window)


def test_length_groups_make_batches_of_similar_length() -> None:
    base, costs, grouped = _grouped()

    def spread(stream) -> float:  # noqa: ANN001
        batches = [[costs[stream[s * 4 + j]] for j in range(4)] for s in range(30)]
        return sum(max(b) - min(b) for b in batches) / len(batches)

    assert spread(grouped) < spread(base) / 2
    for s in range(30):  # ascending within a global batch: each rank's slice is contiguous
        batch = [costs[grouped[s * 4 + j]] for j in range(4)]
        assert batch == sorted(batch)


def test_length_groups_visit_batches_in_a_shuffled_order_and_can_seek() -> None:
    _, costs, grouped = _grouped(size=200, global_batch=4, groups=10)
    firsts = [costs[grouped[s * 4]] for s in range(10)]
    assert firsts != sorted(firsts)  # not shortest-first, which would bias the schedule
    sequential = [grouped[k] for k in range(150)]
    fresh = LengthGroupedStream(EpochStream(200, seed=1), costs, 4, 10, seed=1)
    assert [fresh[k] for k in range(149, -1, -1)] == sequential[::-1]
    with pytest.raises(ValueError, match="positive"):
        LengthGroupedStream(EpochStream(5, seed=0), costs, 4, 0, seed=0)


def test_record_cost_counts_audio_seconds_and_text(tmp_path) -> None:  # noqa: ANN001
    import numpy as np
    import soundfile

    wav = tmp_path / "two.wav"
    soundfile.write(wav, np.zeros(32000, dtype=np.float32), 16000)  # 2 s
    pretrain = {"id": "a", "audio": {"path": "x.wav", "offset": 0.0, "duration": 1.0}, "text": "abcdef"}
    assert record_cost(pretrain) == pytest.approx(25 + 6 / 3)
    no_duration = {**pretrain, "audio": {"path": str(wav), "offset": 0.5, "duration": None}}
    assert record_cost(no_duration) == pytest.approx(25 * 1.5 + 2)
    broken = {**pretrain, "audio": {"path": str(tmp_path / "missing.wav"), "offset": 0.0, "duration": None}}
    assert record_cost(broken) == pytest.approx(2)  # the collator skips and counts it later
    dpo = {
        "id": "b",
        "_source": "m.jsonl:1",
        "prompt": [{"role": "user", "content": [{"type": "text", "text": "abc", "audio": None}]}],
        "chosen": "abcabc",
        "rejected": "abc",
    }
    assert record_cost(dpo) == pytest.approx((3 + 6 + 3) / 3)


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_deal_in_order_gives_each_rank_every_worlds_item_in_order(world: int) -> None:
    for size in range(1, 23):
        ranked = list(range(size))  # ascending "lengths"
        order = deal_in_order(ranked, world)
        assert sorted(order) == ranked
        for r in range(world):
            span = [order[i] for batch in evaluation_batches(size, 2, r, world) for i, real in batch if real]
            assert span == sorted(span)  # a rank's batches hold neighbours in the order
            assert not span or span[0] < world  # dealt like cards: each rank starts with a short one
