"""Next-token log-probabilities and the language-model loss, from logits and collator labels.

Shapes: B rows, L tokens, V vocabulary. `labels` are the collator's (B, L) tensor: a token id where the
row is supervised, IGNORE_INDEX (-100) elsewhere. Position t of the logits predicts labels[:, t + 1], so
every result here has L - 1 positions, and labels[:, 0] is never a target.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from lalm.data.collators import IGNORE_INDEX

# Logits per chunk, counted in elements: 2**25 fp32 values is 128 MiB, about 220 positions of Qwen2's
# 151,646-token vocabulary. Only one chunk is ever upcast to float32 at a time.
CHUNK_ELEMENTS = 2**25


def mask_of(labels: torch.Tensor) -> torch.Tensor:
    """Which next-token positions are supervised.

    labels (B, L) long -> (B, L-1) bool: True where labels[:, t + 1] != IGNORE_INDEX.
    """
    return labels[:, 1:] != IGNORE_INDEX


def _chunk_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits (N, V) any float dtype, targets (N,) long in [0, V) -> (N,) float32 log p(target)."""
    logits = logits.float()
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return picked - logits.logsumexp(-1)


def target_logps(
    logits: torch.Tensor, targets: torch.Tensor, chunk_elements: int = CHUNK_ELEMENTS
) -> torch.Tensor:
    """log softmax(logits[n])[targets[n]] for each row n: logits (N, V) any float dtype, targets (N,)
    long in [0, V) -> (N,) float32.

    Equal to `log_softmax(logits.float(), -1).gather(-1, targets[:, None])` without the (N, V) float32
    copy: rows are taken `chunk_elements // V` at a time and only that chunk is upcast. With autograd
    on and bf16/fp16 logits, each chunk is recomputed in backward (activation checkpointing) instead of
    keeping its float32 copy alive until then.
    """
    rows = max(1, chunk_elements // logits.shape[-1])
    # Checkpointing only pays for a low-precision input, whose float32 copy it avoids keeping; float32
    # logits are upcast to themselves, so recomputing their chunks in backward would buy no memory.
    use_checkpoint = torch.is_grad_enabled() and logits.requires_grad and logits.dtype != torch.float32
    chunks = []
    # split() gives views: no copy in the logits dtype.
    for logits_chunk, targets_chunk in zip(logits.split(rows), targets.split(rows), strict=True):
        if use_checkpoint:
            chunk = checkpoint(_chunk_logps, logits_chunk, targets_chunk, use_reentrant=False)
        else:
            chunk = _chunk_logps(logits_chunk, targets_chunk)
        chunks.append(chunk)
    return torch.cat(chunks)  # split() of 0 rows still gives one (empty) chunk, in the graph


def token_logps(
    logits: torch.Tensor, labels: torch.Tensor, chunk_elements: int = CHUNK_ELEMENTS
) -> torch.Tensor:
    """Log-probability of each next token; 0 where it is not supervised.

    logits (B, L, V) any float dtype, labels (B, L) long -> (B, L-1) float32, where out[:, t] is
    log softmax(logits[:, t])[labels[:, t + 1]] (through `target_logps`, chunked).

    Training never builds these full logits (lalm.stages.base.supervised_logits computes the output
    layer only where a token is supervised); this form is for callers that have them anyway.
    """
    if logits.ndim != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(
            f"expected logits (B, L, V) and labels (B, L), got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    batch, length, _ = logits.shape
    # Targets aligned with every logits position; the last position predicts nothing and is dropped below.
    targets = torch.cat([labels[:, 1:], labels.new_full((batch, 1), IGNORE_INDEX)], dim=1).flatten()
    supervised = targets != IGNORE_INDEX
    # flatten(0, 1) is a view of contiguous logits.
    picked = target_logps(logits.flatten(0, 1), targets.masked_fill(~supervised, 0), chunk_elements)
    # where(), not a product: masked positions get exactly 0 and no gradient.
    logps = torch.where(supervised, picked, 0.0)
    return logps.view(batch, length)[:, :-1]


def row_sums(values: torch.Tensor, rows: torch.Tensor, num_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row sums and counts of packed per-token values: values (N,), rows (N,) long -> ((R,), (R,) long)."""
    sums = values.new_zeros(num_rows).index_add(0, rows, values)
    counts = torch.zeros(num_rows, dtype=torch.long, device=rows.device).index_add(
        0, rows, torch.ones_like(rows)
    )
    return sums, counts


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability of each row's supervised tokens, and how many there are.

    logits (B, L, V), labels (B, L) -> (logps (B,) float32, counts (B,) long). A row with no supervised
    token gets logp 0 and count 0. These sums are what DPO compares (Rafailov et al. 2023, Eq. 7).
    """
    return token_logps(logits, labels).sum(dim=-1), mask_of(labels).sum(dim=-1)


def lm_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Next-token cross-entropy summed (not averaged) over supervised tokens, and their number.

    logits (B, L, V), labels (B, L) -> (loss () float32, count). The caller divides by the token count
    of the whole optimizer step across ranks, so that every token weighs the same however the tokens
    fall into micro-batches; a mean per micro-batch would weigh tokens of short batches more.
    """
    return -token_logps(logits, labels).sum(), int(mask_of(labels).sum().item())
