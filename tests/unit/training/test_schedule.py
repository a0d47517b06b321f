"""Learning-rate multipliers: linear warmup, then cosine to min_ratio (or constant), by hand."""

from __future__ import annotations

import math

import pytest
import torch

from lalm.training.schedule import lr_multiplier

WARMUP, MAX_STEPS, MIN_RATIO = 4, 20, 0.1


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_warmup_is_linear_from_one_over_warmup(schedule):
    multiplier = lr_multiplier(schedule, WARMUP, MAX_STEPS, MIN_RATIO)
    assert [multiplier(s) for s in range(WARMUP)] == pytest.approx([0.25, 0.5, 0.75, 1.0])


def test_cosine_by_hand():
    multiplier = lr_multiplier("cosine", WARMUP, MAX_STEPS, MIN_RATIO)
    # 16 decay steps after warmup: step 4 + n has progress n / 16.
    assert multiplier(WARMUP) == pytest.approx(1.0)
    assert multiplier(12) == pytest.approx(0.55)  # half way: 0.1 + 0.9 * 0.5 * (1 + cos(pi / 2))
    assert multiplier(8) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 4 / 16)))
    assert multiplier(17) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 13 / 16)))
    assert multiplier(MAX_STEPS) == pytest.approx(MIN_RATIO)
    assert multiplier(MAX_STEPS + 50) == pytest.approx(MIN_RATIO)  # stays at the floor


def test_cosine_without_warmup_starts_at_one():
    multiplier = lr_multiplier("cosine", 0, 10, 0.0)
    assert multiplier(0) == pytest.approx(1.0)
    assert multiplier(5) == pytest.approx(0.5)
    assert multiplier(10) == pytest.approx(0.0)


def test_cosine_never_increases_after_warmup():
    multiplier = lr_multiplier("cosine", WARMUP, MAX_STEPS, MIN_RATIO)
    values = [multiplier(s) for s in range(WARMUP, MAX_STEPS + 10)]
    assert all(later <= earlier for earlier, later in zip(values[:-1], values[1:], strict=True))
    assert values[0] > values[-1]


def test_constant_stays_at_one_after_warmup():
    multiplier = lr_multiplier("constant", WARMUP, MAX_STEPS, MIN_RATIO)
    assert [multiplier(s) for s in range(WARMUP, MAX_STEPS + 10)] == [1.0] * (MAX_STEPS + 10 - WARMUP)


def test_multiplier_drives_lambda_lr():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=2e-3)
    multiplier = lr_multiplier("cosine", WARMUP, MAX_STEPS, MIN_RATIO)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
    for step in range(MAX_STEPS + 2):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(2e-3 * multiplier(step))
        optimizer.step()
        scheduler.step()
