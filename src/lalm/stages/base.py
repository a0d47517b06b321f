"""The contract between the trainer and a stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from lalm.data.collators import IGNORE_INDEX
from lalm.data.packing import position_rows

Batch = dict[str, Any]


@dataclass
class StepOutput:
    """One micro-batch: `loss` is a SUM over its units (tokens or pairs); metrics are sums too.

    The trainer divides by the units of the whole optimizer step across ranks, so every unit of the
    step weighs the same whatever the micro-batch size and accumulation. Metrics are detached 0-d
    tensors left on the device: the trainer reads them once per step, in its one reduction, so a
    micro-batch forces no host sync.
    """

    loss: torch.Tensor
    units: float | torch.Tensor  # a 0-d tensor may stay on the device, like the metrics
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


class Stage(Protocol):
    name: str
    unit: str  # what the loss is normalised by: "supervised_tokens" or "pairs"

    def sample_stream(self, dataset: Any, seed: int) -> Any: ...

    def count_units(self, batch: Batch) -> float: ...

    def forward(self, engine: Any, batch: Batch) -> StepOutput: ...


def to_device(batch: Batch, device: torch.device) -> Batch:
    """Tensors to `device`; from pinned memory (the DataLoader's pin_memory on GPU) the copies are
    asynchronous."""
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
    }


def masked_labels(batch: Batch) -> torch.Tensor:
    """Labels with weight-0 examples (evaluation padding, the collators' placeholders) masked out.
    Conversation rows only (one row per example): (R, L) long, or (1, T) for a packed batch."""
    labels = batch["labels"]
    weights = batch["example_weights"].to(labels.device)[position_rows(batch, labels.device)]
    return torch.where(weights > 0, labels, torch.full_like(labels, IGNORE_INDEX))
