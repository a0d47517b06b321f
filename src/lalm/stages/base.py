"""The contract between the trainer and a stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from lalm.data.collators import IGNORE_INDEX, model_inputs

Batch = dict[str, Any]


@dataclass
class StepOutput:
    """One micro-batch: `loss` is a SUM over its units (tokens or pairs); metrics are sums too.

    The trainer divides by the units of the whole optimizer step across ranks, so every unit of the
    step weighs the same whatever the micro-batch size and accumulation.
    """

    loss: torch.Tensor
    units: float
    metrics: dict[str, float] = field(default_factory=dict)


class Stage(Protocol):
    name: str
    unit: str  # what the loss is normalised by: "supervised_tokens" or "pairs"

    def collator(self, processor: Any, max_length: int) -> Any: ...

    def sample_stream(self, dataset: Any, seed: int) -> Any: ...

    def count_units(self, batch: Batch) -> float: ...

    def forward(self, engine: Any, batch: Batch) -> StepOutput: ...


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def masked_labels(batch: Batch) -> torch.Tensor:
    """Labels with weight-0 examples (evaluation padding) masked out. Conversation rows only."""
    labels = batch["labels"]
    weights = batch["example_weights"].to(labels.device)
    return torch.where(weights[:, None] > 0, labels, torch.full_like(labels, IGNORE_INDEX))


def logits_of(engine: Any, batch: Batch) -> torch.Tensor:
    """(rows, L, V) logits from a forward of the (DeepSpeed-wrapped) model."""
    return engine(**model_inputs(batch), use_cache=False).logits
