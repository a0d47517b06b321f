"""Pretraining and SFT: next-token loss on assistant tokens (pretrain's assistant turn is the target).

The two differ only in data: SFT draws chat-mode and analysis-mode examples into the same batches
with configured weights; pretraining reads its manifest in shuffled epochs.
"""

from __future__ import annotations

from typing import Any

from lalm.data.collators import CollatorConfig, ConversationCollator
from lalm.data.sampling import EpochStream, MixtureStream
from lalm.losses.token import lm_loss_sum
from lalm.stages.base import Batch, StepOutput, logits_of, masked_labels


class LanguageModelingStage:
    unit = "supervised_tokens"

    def __init__(self, name: str, chat_weight: float | None = None) -> None:
        self.name = name
        self.chat_weight = chat_weight

    def collator(self, processor: Any, max_length: int) -> ConversationCollator:
        return ConversationCollator(processor, CollatorConfig(max_length=max_length))

    def sample_stream(self, dataset: Any, seed: int) -> EpochStream | MixtureStream:
        if self.chat_weight is None:
            return EpochStream(len(dataset), seed)
        modes = dataset.records["mode"]
        groups = [[i for i, m in enumerate(modes) if m == mode] for mode in ("chat", "analysis")]
        return MixtureStream(groups, [self.chat_weight, 1.0 - self.chat_weight], seed)

    def count_units(self, batch: Batch) -> float:
        return float((masked_labels(batch)[:, 1:] != -100).sum())

    def forward(self, engine: Any, batch: Batch) -> StepOutput:
        labels = masked_labels(batch)
        loss_sum, tokens = lm_loss_sum(logits_of(engine, batch), labels)
        return StepOutput(loss=loss_sum, units=float(tokens))
