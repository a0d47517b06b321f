"""The contract between the trainer and a stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from lalm.data.collators import IGNORE_INDEX, model_inputs
from lalm.losses.token import mask_of, row_sums, target_logps

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
    """Labels with weight-0 examples (evaluation padding, the collators' placeholders) masked out.
    Conversation rows only: (R, L) long."""
    labels = batch["labels"]
    weights = batch["example_weights"].to(labels.device)
    return torch.where(weights[:, None] > 0, labels, torch.full_like(labels, IGNORE_INDEX))


def logits_of(engine: Any, batch: Batch) -> torch.Tensor:
    """(rows, L, V) logits from a forward of the (DeepSpeed-wrapped) model."""
    return engine(**model_inputs(batch), use_cache=False).logits


@dataclass
class Supervised:
    """The output layer's logits at the positions that predict a supervised token, packed row-major:
    logits (N, V), their targets (N,) and the batch row of each (N,); `num_rows` rows in the batch."""

    logits: torch.Tensor
    targets: torch.Tensor
    rows: torch.Tensor
    num_rows: int

    def logps(self) -> torch.Tensor:
        """(N,) float32 log-probability of each target."""
        return target_logps(self.logits, self.targets)

    def sequence_logps(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed target log-probs per row and the number of targets: ((rows,), (rows,) long)."""
        return row_sums(self.logps(), self.rows, self.num_rows)


def output_layer(model: Any) -> torch.nn.Module:
    """The LM head of a (DeepSpeed- or peft-wrapped) causal LM."""
    head = getattr(model, "module", model).get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(model).__name__} has no output layer (get_output_embeddings() is None)")
    return head


def supervised_logits(engine: Any, batch: Batch, labels: torch.Tensor) -> Supervised:
    """A forward of the (wrapped) model whose output layer runs only where labels[:, t + 1] is a target.

    Qwen2-Audio applies its LM head to every position, audio included, and offers no way to select
    positions, so a forward pre-hook on the head hands it only the supervised hidden states. For the
    tiny model that skips ~85% of a (L, V) projection and its log-softmax; for a 150k vocabulary it is
    also the memory of the full (B, L, V) logits, which are never built. Under ZeRO-3 the head is
    still called on every rank (with 0 rows where nothing is supervised), so its gathers stay in step.
    """
    keep = mask_of(labels)  # (B, L-1): position t predicts labels[:, t + 1]

    def select(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        hidden = args[0]
        return (hidden[:, :-1][keep.to(hidden.device)], *args[1:])

    handle = output_layer(engine).register_forward_pre_hook(select)
    try:
        logits = logits_of(engine, batch)
    finally:
        handle.remove()
    rows = keep.nonzero()[:, 0].to(logits.device)
    return Supervised(logits, labels[:, 1:][keep].to(logits.device), rows, labels.shape[0])


def sequence_logps_of(model: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs of each row's supervised tokens under `model`, and their counts ((B,), (B,))."""
    return supervised_logits(model, batch, batch["labels"]).sequence_logps()
