"""Pretraining and SFT: next-token loss on assistant tokens (pretrain's assistant turn is the target).

The two differ only in data: SFT draws chat-mode and analysis-mode examples into the same batches
with configured weights; pretraining reads its manifest in shuffled epochs.
"""

from __future__ import annotations

from typing import Any

import torch

from lalm.data.packing import row_count
from lalm.data.sampling import EpochStream, MixtureStream
from lalm.models.training import forward_batch
from lalm.stages.base import Batch, StepOutput, masked_labels
from lalm.stages.ctc import ctc_loss_sum, ctc_targets


def task_groups(
    indices: list[int], tasks: list[str | None], weights: dict[str, float]
) -> tuple[list[list[int]], list[float]]:
    """The examples `indices` grouped by task, and each group's share (weight x size, summing to 1):
    every example is drawn with probability proportional to its task's weight (1 for unlisted tasks
    and for records without a task)."""
    present = {tasks[i] for i in indices}
    unknown = sorted(set(weights) - present)
    if unknown:
        raise ValueError(
            f"stage.task_weights names tasks the manifest does not have: {unknown}; "
            f"its tasks are {sorted(t for t in present if t is not None)}"
        )
    groups: dict[str | None, list[int]] = {}
    for index in indices:
        groups.setdefault(tasks[index], []).append(index)
    names = sorted(groups, key=str)
    sizes = [
        weights.get(name, 1.0) * len(groups[name]) if name is not None else len(groups[name])
        for name in names
    ]
    total = sum(sizes)
    if total <= 0:
        raise ValueError(
            f"stage.task_weights {weights} leaves none of the tasks {sorted(present, key=str)} in"
        )
    return [groups[name] for name in names], [size / total for size in sizes]


def task_mixture(tasks: list[str | None], weights: dict[str, float], seed: int) -> MixtureStream:
    """Draw each example with probability proportional to its task's weight (1 for unlisted tasks)."""
    groups, shares = task_groups(list(range(len(tasks))), tasks, weights)
    return MixtureStream(groups, shares, seed)


class LanguageModelingStage:
    unit = "supervised_tokens"

    def __init__(
        self,
        name: str,
        chat_weight: float | None = None,
        ctc_weight: float = 0.0,
        special_ids: tuple[int, ...] = (),
        task_weights: dict[str, float] | None = None,
    ) -> None:
        self.name = name
        self.chat_weight = chat_weight
        self.task_weights = task_weights or {}
        self.ctc_weight = ctc_weight
        self.special_ids = set(
            special_ids
        )  # blank = the first (<|endoftext|>); all are kept out of CTC targets
        self.blank = special_ids[0] if special_ids else 0

    def sample_stream(self, dataset: Any, seed: int) -> EpochStream | MixtureStream:
        """Pretraining: shuffled epochs, or the task mixture. SFT: chat vs analysis by chat_weight, and
        within analysis by task_weights."""
        if self.chat_weight is None:
            if self.task_weights:
                return task_mixture(dataset.records["task"], self.task_weights, seed)
            return EpochStream(len(dataset), seed)
        modes = dataset.records["mode"]
        chat, analysis = [[i for i, m in enumerate(modes) if m == mode] for mode in ("chat", "analysis")]
        if not self.task_weights:
            return MixtureStream([chat, analysis], [self.chat_weight, 1.0 - self.chat_weight], seed)
        groups, shares = task_groups(analysis, dataset.records["task"], self.task_weights)
        weights = [self.chat_weight] + [(1.0 - self.chat_weight) * share for share in shares]
        return MixtureStream([chat, *groups], weights, seed)

    def count_units(self, batch: Batch) -> float:
        return float((masked_labels(batch)[:, 1:] != -100).sum())

    def forward(self, engine: Any, batch: Batch) -> StepOutput:
        labels = masked_labels(batch)
        if not self.ctc_weight or "input_features" not in batch:
            supervised = forward_batch(engine, batch, labels).supervised
            return StepOutput(loss=-supervised.logps().sum(), units=float(supervised.targets.numel()))
        if len(batch["audio_clip_index"]) != row_count(batch):
            raise ValueError("the CTC loss needs exactly one clip per example (pretraining records)")
        # Masked labels: weight-0 rows (evaluation padding) get empty targets and are left out. The
        # head runs inside the model's forward even on no clips, so every rank calls it (ZeRO-3).
        targets = ctc_targets({**batch, "labels": labels}, self.special_ids)
        keep = [i for i, target in enumerate(targets) if target is not None and len(target) > 0]
        kept_targets = [target for target in targets if target is not None and len(target) > 0]
        clips = torch.tensor(keep, dtype=torch.long).to(labels.device, non_blocking=True)
        out = forward_batch(engine, batch, labels, ctc_clips=clips)
        assert out.ctc_logits is not None and out.ctc_lengths is not None, "ctc_weight > 0 but no CTC head"
        loss_sum, tokens = -out.supervised.logps().sum(), out.supervised.targets.numel()
        # ctc_lengths: encoder frames per clip, a long clip's windows end to end (lalm.models.encoder).
        ctc = ctc_loss_sum(out.ctc_logits, out.ctc_lengths, kept_targets, self.blank)
        total = loss_sum + self.ctc_weight * ctc
        metrics = {"ctc": ctc.detach(), "lm_loss": loss_sum.detach()}
        return StepOutput(loss=total, units=float(tokens), metrics=metrics)
