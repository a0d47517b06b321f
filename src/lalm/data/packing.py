"""Padding-free batches: a collated batch's rows laid end to end in one sequence.

A padded batch of R rows of length L computes R x L positions; the packed form computes only the real
tokens. Each row keeps its own positions (position_ids restart at 0), and transformers turns restarting
position ids into attention that never crosses a row: flash-attention's varlen kernels where that is
the attention implementation, a block-diagonal causal mask for sdpa and eager (masking_utils'
packed-sequence detection, used when attention_mask is None). No library packs a collated multimodal
batch (TRL's padding-free collator flattens text only, and knows nothing of audio spans), hence this.

Example: rows [a b c _] and [d e _ _] (_ = padding) become

    input_ids      (1, 5)  [a b c d e]
    position_ids   (1, 5)  [0 1 2 0 1]
    labels         (1, 5)  the rows' labels, with each row's FIRST label -100: the token before it
                           is the previous row's last, which must not predict it
    sequence_index (1, 5)  [0 0 0 1 1]: the row each position belongs to
    attention_mask (1, 5)  ones: counts real tokens (the model gets none; see above)
    num_rows       2

Everything else (audio features, audio_clip_index, ids, weights, num_pairs, dropped...) is unchanged:
audio spans stay in row-major order, which is the order they are filled in.
"""

from __future__ import annotations

from typing import Any

import torch

IGNORE_INDEX = -100  # labels: not a target (lalm.data.collators re-exports it)


def pack_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """A right-padded collated batch (R, L) -> the same batch packed into (1, T), T = its real tokens."""
    mask = batch["attention_mask"].bool()
    lengths = mask.sum(-1)
    starts = torch.cumsum(lengths, 0) - lengths
    labels = batch["labels"][mask].clone()
    labels[starts] = IGNORE_INDEX
    total = int(lengths.sum())
    rows = batch["input_ids"].shape[0]
    return {
        **batch,
        "input_ids": batch["input_ids"][mask][None],
        "labels": labels[None],
        "attention_mask": torch.ones(1, total, dtype=torch.long),
        "position_ids": (torch.arange(total) - torch.repeat_interleave(starts, lengths))[None],
        "sequence_index": torch.repeat_interleave(torch.arange(rows), lengths)[None],
        "num_rows": rows,
    }


def is_packed(batch: dict[str, Any]) -> bool:
    return "sequence_index" in batch


def row_count(batch: dict[str, Any]) -> int:
    """Rows of the batch as collated (packed or not)."""
    return int(batch["num_rows"]) if is_packed(batch) else int(batch["input_ids"].shape[0])


def rows_of(batch: dict[str, Any], key: str) -> list[torch.Tensor]:
    """Per row, the values of `key` ("input_ids" or "labels"): (L,) each, padding included when not
    packed, only the row's real tokens when packed."""
    if not is_packed(batch):
        return list(batch[key])
    lengths = torch.bincount(batch["sequence_index"][0], minlength=row_count(batch)).tolist()
    return list(batch[key][0].split(lengths))


def position_rows(batch: dict[str, Any], device: torch.device) -> torch.Tensor:
    """The row of every (batch, position) of input_ids: (B, L) long on `device`."""
    if is_packed(batch):
        return batch["sequence_index"].to(device)
    rows, length = batch["input_ids"].shape
    return torch.arange(rows, device=device)[:, None].expand(rows, length)
