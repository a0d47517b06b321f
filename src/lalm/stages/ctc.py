"""Auxiliary CTC loss on the audio encoder's output, for pretraining only (not part of Qwen2-Audio).

Why: a small model trained from scratch with the LM loss alone first learns to guess transcripts
from the text templates without listening; a CTC head on the encoder forces the encoder to align
audio with text from the first steps. Measured here (see the README, "Auxiliary CTC"): held-out
English WER after 6 minutes 51% with the LM loss alone, 12% with CTC weight 0.5. The head is dropped
at export (it is a module of lalm.models.training.AudioLanguageModel, not of the transformers
model).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from lalm.data.collators import IGNORE_INDEX
from lalm.data.packing import row_count, rows_of


def ctc_targets(batch: dict[str, Any], skip_ids: set[int]) -> list[torch.Tensor | None]:
    """Per clip: the supervised tokens of its row (minus end tokens) if the row is an ASR example with
    exactly one clip, else None. Assumes conversation rows (pretrain), one clip per row; `tasks` is
    per row (a placeholder's is None)."""
    targets: list[torch.Tensor | None] = []
    tasks = batch.get("tasks") or [None] * row_count(batch)
    skip = torch.tensor(sorted(skip_ids), device=batch["input_ids"].device)
    rows = zip(rows_of(batch, "input_ids"), rows_of(batch, "labels"), strict=True)
    for task, (row_ids, row_labels) in zip(tasks, rows, strict=True):
        if task != "asr":
            targets.append(None)
            continue
        ids = row_ids[row_labels != IGNORE_INDEX]
        targets.append(ids[~torch.isin(ids, skip)])
    return targets


def ctc_loss_sum(
    logits: torch.Tensor, lengths: torch.Tensor, targets: list[torch.Tensor], blank: int
) -> torch.Tensor:
    """Summed CTC loss over clips, each with a non-empty target (the caller keeps only those).

    logits (N, T, V) per clip and encoder frame; lengths (N,) real frames; targets[i] (S_i,), S_i > 0.
    """
    if not targets:
        return logits.sum() * 0.0  # keeps the graph (and ZeRO's hooks) identical on every rank
    log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)
    return F.ctc_loss(
        log_probs,
        torch.cat(targets),
        lengths,
        torch.tensor([len(t) for t in targets], device=logits.device),
        blank=blank,
        reduction="sum",
        zero_infinity=True,
    )
