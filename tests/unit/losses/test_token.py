"""Per-token log-probabilities and the LM loss: a hand-worked example, and the chunked fast path
against the slow, obvious log_softmax -> gather path."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lalm.data.collators import IGNORE_INDEX
from lalm.losses.full_logits import lm_loss_sum, mask_of, sequence_logps, token_logps
from lalm.losses.token import row_sums, target_logps

B, L, V = 3, 9, 11


def _random_batch(dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (B, L, V) in `dtype`; labels (B, L) with a masked prompt, a masked hole and an all-masked row."""
    g = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(B, L, V, generator=g)).to(dtype)
    labels = torch.randint(0, V, (B, L), generator=g)
    labels[0, :3] = IGNORE_INDEX  # prompt
    labels[1, 5] = IGNORE_INDEX  # a hole inside the response
    labels[2, :] = IGNORE_INDEX  # nothing supervised
    return logits, labels


def _slow_token_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The obvious path: full float32 log_softmax, gather the next token, zero where unsupervised."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)[:, :-1]
    targets = labels[:, 1:]
    picked = logprobs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return torch.where(targets != IGNORE_INDEX, picked, 0.0)


def _hand_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """V = 3, L = 3. Only logits[:, 0] and logits[:, 1] matter (they predict labels[:, 1] and labels[:, 2])."""
    ln2, ln3 = math.log(2), math.log(3)
    logits = torch.tensor(
        [
            [[0.0, 0.0, 0.0], [0.0, ln2, 0.0], [5.0, -1.0, 2.0]],  # p = 1/3, 1/3, 1/3 then 1/4, 2/4, 1/4
            [[9.0, 9.0, 9.0], [ln3, 0.0, 0.0], [0.0, 0.0, 0.0]],  # second position: p = 3/5, 1/5, 1/5
            [[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [0.0, 0.0, 0.0]],
        ],
        dtype=torch.float64,
    )
    labels = torch.tensor([[1, 2, 1], [0, IGNORE_INDEX, 0], [2, IGNORE_INDEX, IGNORE_INDEX]])
    return logits, labels


def test_mask_of_shifts_labels_by_one() -> None:
    labels = torch.tensor([[5, IGNORE_INDEX, 3, IGNORE_INDEX], [IGNORE_INDEX, 1, 2, 4]])
    expected = torch.tensor([[False, True, False], [True, True, True]])
    assert torch.equal(mask_of(labels), expected)


def test_hand_worked_example() -> None:
    logits, labels = _hand_batch()
    # Row 0: target 2 under a uniform p -> log(1/3); target 1 under (1/4, 2/4, 1/4) -> log(1/2).
    # Row 1: first target masked; target 0 under (3/5, 1/5, 1/5) -> log(3/5). Row 2: nothing supervised.
    expected = torch.tensor(
        [[math.log(1 / 3), math.log(1 / 2)], [0.0, math.log(3 / 5)], [0.0, 0.0]], dtype=torch.float64
    )
    torch.testing.assert_close(token_logps(logits, labels), expected.float())

    logps, counts = sequence_logps(logits, labels)
    torch.testing.assert_close(logps, torch.tensor([-math.log(6), math.log(3 / 5), 0.0]))
    assert counts.tolist() == [2, 1, 0]

    # -(log(1/6) + log(3/5)) = log 10, over 3 supervised tokens.
    loss, count = lm_loss_sum(logits, labels)
    assert loss.item() == pytest.approx(math.log(10), rel=1e-6)
    assert count == 3 and isinstance(count, int)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("chunk_rows", [1, 4, 10_000])  # one position at a time, uneven chunks, one chunk
def test_token_logps_equals_slow_path(dtype: torch.dtype, chunk_rows: int) -> None:
    logits, labels = _random_batch(dtype)
    fast = token_logps(logits, labels, chunk_elements=chunk_rows * V)
    assert fast.shape == (B, L - 1) and fast.dtype == torch.float32
    torch.testing.assert_close(fast, _slow_token_logps(logits, labels), rtol=1e-6, atol=1e-5)
    assert torch.all(fast[~mask_of(labels)] == 0)
    assert torch.all(fast[mask_of(labels)] < 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_token_logps_gradient_equals_slow_path(dtype: torch.dtype) -> None:
    logits, labels = _random_batch(dtype, seed=1)
    weights = torch.randn(B, L - 1, generator=torch.Generator().manual_seed(2))
    grads = []
    for fn in (
        lambda x: token_logps(x, labels, chunk_elements=4 * V),
        lambda x: _slow_token_logps(x, labels),
    ):
        x = logits.clone().requires_grad_(True)
        (fn(x) * weights).sum().backward()
        assert x.grad is not None and x.grad.dtype == dtype
        grads.append(x.grad.float())
    tol = 1e-6 if dtype == torch.float32 else 1e-2  # bf16 gradients round to 8 bits of mantissa
    torch.testing.assert_close(grads[0], grads[1], rtol=tol, atol=tol)


def test_lm_loss_gradient_is_softmax_minus_one_hot_on_supervised_positions() -> None:
    logits, labels = _random_batch(torch.float32, seed=3)
    logits.requires_grad_(True)
    loss, _ = lm_loss_sum(logits, labels)
    loss.backward()
    assert logits.grad is not None
    # d(-log p_y)/dz = softmax(z) - onehot(y) where the next token is supervised, 0 everywhere else.
    mask = mask_of(labels)
    expected = torch.softmax(logits.detach(), dim=-1)[:, :-1] - F.one_hot(labels[:, 1:].clamp(min=0), V)
    expected = torch.where(mask.unsqueeze(-1), expected, 0.0)
    torch.testing.assert_close(logits.grad[:, :-1], expected)
    assert torch.all(logits.grad[:, -1] == 0)  # the last position predicts nothing
    assert logits.grad[:, :-1][mask].abs().sum() > 0


def test_lm_loss_sum_matches_torch_cross_entropy() -> None:
    logits, labels = _random_batch(torch.float32, seed=4)
    loss, count = lm_loss_sum(logits, labels)
    assert count == int((labels[:, 1:] != IGNORE_INDEX).sum()) > 0
    flat_logits, flat_labels = logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten()
    mean = F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE_INDEX)
    total = F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    torch.testing.assert_close(loss / count, mean)
    torch.testing.assert_close(loss, total)


def test_all_masked_rows_give_zero_and_count_zero() -> None:
    logits = torch.randn(2, 5, V, requires_grad=True)
    labels = torch.full((2, 5), IGNORE_INDEX)
    labels[:, 0] = 3  # the first label is never a target, so these rows are still unsupervised

    assert torch.equal(token_logps(logits, labels), torch.zeros(2, 4))
    logps, counts = sequence_logps(logits, labels)
    assert logps.tolist() == [0.0, 0.0] and counts.tolist() == [0, 0]
    loss, count = lm_loss_sum(logits, labels)
    assert loss.item() == 0.0 and count == 0
    loss.backward()
    assert logits.grad is not None and torch.all(logits.grad == 0)


def test_no_float32_copy_of_the_logits_is_kept_for_backward() -> None:
    """With autograd on, what is saved for backward beyond the logits themselves is far below one fp32 chunk
    (the naive path keeps two float32 copies of all the logits alive until backward)."""
    batch, length, vocab, chunk_rows = 4, 64, 1000, 16
    logits = torch.randn(batch, length, vocab, dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, vocab, (batch, length))
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = token_logps(logits, labels, chunk_elements=chunk_rows * vocab)
    storages.pop(logits.untyped_storage().data_ptr(), None)
    assert sum(storages.values()) < chunk_rows * vocab * 4
    out.sum().backward()  # and backward still works, recomputing each chunk
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_token_logps_same_with_and_without_grad() -> None:
    logits, labels = _random_batch(torch.float32, seed=5)
    with torch.no_grad():
        without = token_logps(logits, labels, chunk_elements=3 * V)
    with_grad = token_logps(logits.clone().requires_grad_(True), labels, chunk_elements=3 * V)
    assert torch.equal(without, with_grad.detach())


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"logits \(B, L, V\) and labels \(B, L\)"):
        token_logps(torch.zeros(2, 5, V), torch.zeros(2, 4, dtype=torch.long))


def test_row_sums_adds_packed_values_per_row() -> None:
    values = torch.tensor([1.0, 2.0, 4.0, 8.0])
    sums, counts = row_sums(values, torch.tensor([0, 2, 2, 0]), num_rows=4)
    assert torch.equal(sums, torch.tensor([9.0, 0.0, 6.0, 0.0]))
    assert torch.equal(counts, torch.tensor([2, 0, 2, 0]))


def test_target_logps_of_no_rows_is_empty() -> None:
    assert target_logps(torch.zeros(0, V), torch.zeros(0, dtype=torch.long)).shape == (0,)
