"""Target log-probabilities from the output layer's logits, as training computes them.

Training applies the output layer only at supervised positions (lalm.models.training), so these take
packed logits (N, V) and their targets (N,). The full-logit forms over (B, L, V) and collator labels
are lalm.losses.full_logits: the reference implementations the tests compare these against.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

# Logits per chunk, counted in elements: 2**25 fp32 values is 128 MiB, about 220 positions of Qwen2's
# 151,646-token vocabulary. Only one chunk is ever upcast to float32 at a time.
CHUNK_ELEMENTS = 2**25


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


def row_sums(values: torch.Tensor, rows: torch.Tensor, num_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row sums and counts of packed per-token values: values (N,), rows (N,) long -> ((R,), (R,) long)."""
    sums = values.new_zeros(num_rows).index_add(0, rows, values)
    counts = torch.zeros(num_rows, dtype=torch.long, device=rows.device).index_add(
        0, rows, torch.ones_like(rows)
    )
    return sums, counts
