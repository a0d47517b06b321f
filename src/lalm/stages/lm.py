"""Pretraining and SFT: next-token loss on assistant tokens (pretrain's assistant turn is the target).

The two differ only in data: SFT draws chat-mode and analysis-mode examples into the same batches
with configured weights; pretraining reads its manifest in shuffled epochs.
"""

from __future__ import annotations

from typing import Any

import torch

from lalm.data.chat import audio_token_count
from lalm.data.collators import CollatorConfig, ConversationCollator
from lalm.data.sampling import EpochStream, MixtureStream
from lalm.losses.token import lm_loss_sum
from lalm.stages.base import Batch, StepOutput, logits_of, masked_labels
from lalm.stages.ctc import HEAD_NAME, ctc_loss_sum, ctc_targets, find_module


def task_mixture(tasks: list[str], weights: dict[str, float], seed: int) -> MixtureStream:
    """Draw each example with probability proportional to its task's weight (1 for unlisted tasks)."""
    unknown = sorted(set(weights) - set(tasks))
    if unknown:
        raise ValueError(
            f"stage.task_weights names tasks the manifest does not have: {unknown}; "
            f"its tasks are {sorted(set(tasks))}"
        )
    groups: dict[str, list[int]] = {}
    for index, task in enumerate(tasks):
        groups.setdefault(task, []).append(index)
    names = sorted(groups)
    # MixtureStream picks a group by weight, then an example uniformly: weight x size per example.
    group_weights = [weights.get(name, 1.0) * len(groups[name]) for name in names]
    return MixtureStream([groups[name] for name in names], group_weights, seed)


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
        self._modules: dict[tuple[int, str], Any] = {}  # found once per model: a lookup walks all of it
        self.ctc_weight = ctc_weight
        self.special_ids = set(
            special_ids
        )  # blank = the first (<|endoftext|>); all are kept out of CTC targets
        self.blank = special_ids[0] if special_ids else 0

    def collator(self, processor: Any, max_length: int) -> ConversationCollator:
        return ConversationCollator(processor, CollatorConfig(max_length=max_length))

    def sample_stream(self, dataset: Any, seed: int) -> EpochStream | MixtureStream:
        if self.task_weights:
            return task_mixture(dataset.records["task"], self.task_weights, seed)
        if self.chat_weight is None:
            return EpochStream(len(dataset), seed)
        modes = dataset.records["mode"]
        groups = [[i for i, m in enumerate(modes) if m == mode] for mode in ("chat", "analysis")]
        return MixtureStream(groups, [self.chat_weight, 1.0 - self.chat_weight], seed)

    def count_units(self, batch: Batch) -> float:
        return float((masked_labels(batch)[:, 1:] != -100).sum())

    def forward(self, engine: Any, batch: Batch) -> StepOutput:
        labels = masked_labels(batch)
        if not self.ctc_weight or "input_features" not in batch:
            loss_sum, tokens = lm_loss_sum(logits_of(engine, batch), labels)
            return StepOutput(loss=loss_sum, units=float(tokens))
        # Masked labels: weight-0 rows (evaluation padding) get empty targets and are left out.
        targets = ctc_targets({**batch, "labels": labels}, self.special_ids)
        keep = [i for i, target in enumerate(targets) if target is not None and len(target) > 0]
        logits, ctc_logits = self._forward_with_ctc(engine, batch, keep)
        loss_sum, tokens = lm_loss_sum(logits, labels)
        lengths = audio_token_count(batch["feature_attention_mask"].sum(-1))  # encoder frames per clip
        kept_lengths = lengths[torch.tensor(keep, dtype=torch.long, device=lengths.device)]
        ctc = ctc_loss_sum(ctc_logits, kept_lengths, [targets[i] for i in keep], self.blank)
        total = loss_sum + self.ctc_weight * ctc
        metrics = {"ctc": float(ctc.detach()), "lm_loss": float(loss_sum.detach())}
        return StepOutput(loss=total, units=float(tokens), metrics=metrics)

    def _forward_with_ctc(
        self, engine: Any, batch: Batch, keep: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits, and the CTC head applied to the encoder output of the clips `keep` (those with a CTC
        target) inside the same forward pass (a hook on the projector), so ZeRO-3 gathers the head's
        weights like any other module's. The head runs even on no clips, so every rank calls it."""
        if len(batch["audio_clip_index"]) != len(batch["ids"]):
            raise ValueError("the CTC loss needs exactly one clip per example (pretraining records)")
        head: Any = self._module(engine, HEAD_NAME)
        captured: dict[str, torch.Tensor] = {}

        def hook(module: Any, args: tuple[torch.Tensor, ...], output: Any) -> None:
            index = torch.tensor(keep, dtype=torch.long, device=args[0].device)
            captured["ctc"] = head(args[0].index_select(0, index))

        handle = self._module(engine, "multi_modal_projector").register_forward_hook(hook)
        try:
            logits = logits_of(engine, batch)
        finally:
            handle.remove()
        return logits, captured["ctc"]

    def _module(self, engine: Any, suffix: str) -> Any:
        key = (id(engine.module), suffix)
        if key not in self._modules:
            self._modules[key] = find_module(engine.module, suffix)
        return self._modules[key]
