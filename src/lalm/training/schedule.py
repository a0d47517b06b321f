"""Learning-rate schedules as multipliers of the base rate (for torch's LambdaLR)."""

from __future__ import annotations

import math
from collections.abc import Callable


def lr_multiplier(
    schedule: str, warmup_steps: int, max_steps: int, min_ratio: float
) -> Callable[[int], float]:
    """Linear warmup from 1/warmup to 1, then cosine from 1 to min_ratio at max_steps (or constant)."""

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return multiplier
