"""pack_batch on a batch written by hand: the exact tensors out."""

from __future__ import annotations

import torch

from lalm.data.packing import pack_batch, position_rows, row_count, rows_of


def _padded() -> dict:
    return {
        "input_ids": torch.tensor([[11, 12, 13, 0], [21, 22, 0, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]),
        "labels": torch.tensor([[-100, 12, 13, -100], [21, 22, -100, -100]]),
        "example_weights": torch.tensor([1.0, 0.0]),
        "ids": ["a", "b"],
    }


def test_rows_are_laid_end_to_end_with_their_own_positions() -> None:
    packed = pack_batch(_padded())
    assert packed["input_ids"].tolist() == [[11, 12, 13, 21, 22]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert packed["sequence_index"].tolist() == [[0, 0, 0, 1, 1]]
    # Row b's first label (21) would be predicted by row a's last token: it is no target any more.
    assert packed["labels"].tolist() == [[-100, 12, 13, -100, 22]]
    assert packed["attention_mask"].tolist() == [[1, 1, 1, 1, 1]]
    assert packed["num_rows"] == row_count(packed) == 2 and row_count(_padded()) == 2
    assert packed["ids"] == ["a", "b"] and torch.equal(packed["example_weights"], torch.tensor([1.0, 0.0]))


def test_rows_and_positions_read_back() -> None:
    packed, padded = pack_batch(_padded()), _padded()
    assert [r.tolist() for r in rows_of(packed, "input_ids")] == [[11, 12, 13], [21, 22]]
    assert [r.tolist() for r in rows_of(padded, "input_ids")] == [[11, 12, 13, 0], [21, 22, 0, 0]]
    assert position_rows(packed, torch.device("cpu")).tolist() == [[0, 0, 0, 1, 1]]
    assert position_rows(padded, torch.device("cpu")).tolist() == [[0, 0, 0, 0], [1, 1, 1, 1]]
