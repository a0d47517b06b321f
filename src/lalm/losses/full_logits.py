"""Next-token log-probabilities and the language-model loss over FULL logits (B, L, V): the reference
implementations the tests and benchmarks compare training's fast path against. Training itself never
builds (B, L, V) logits (lalm.models.training applies the output layer only at supervised positions).

Shapes: B rows, L tokens, V vocabulary. `labels` are the collator's (B, L) tensor: a token id where the
row is supervised, IGNORE_INDEX (-100) elsewhere. Position t of the logits predicts labels[:, t + 1], so
every result here has L - 1 positions, and labels[:, 0] is never a target.
"""

from __future__ import annotations

import torch

from lalm.data.collators import IGNORE_INDEX
from lalm.losses.token import CHUNK_ELEMENTS, target_logps


def mask_of(labels: torch.Tensor) -> torch.Tensor:
    """Which next-token positions are supervised.

    labels (B, L) long -> (B, L-1) bool: True where labels[:, t + 1] != IGNORE_INDEX.
    """
    return labels[:, 1:] != IGNORE_INDEX


def token_logps(
    logits: torch.Tensor, labels: torch.Tensor, chunk_elements: int = CHUNK_ELEMENTS
) -> torch.Tensor:
    """Log-probability of each next token; 0 where it is not supervised.

    logits (B, L, V) any float dtype, labels (B, L) long -> (B, L-1) float32, where out[:, t] is
    log softmax(logits[:, t])[labels[:, t + 1]] (through `target_logps`, chunked).

    Training never builds these full logits (lalm.models.training computes the output layer only
    where a token is supervised).
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
