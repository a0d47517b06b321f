"""The auxiliary CTC loss: which targets it uses, and its value against torch's CTC on a tiny case."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lalm.stages.ctc import ctc_loss_sum, ctc_targets

IM_END, PAD = 2, 0


def _batch():
    # Row 0: ASR, supervised tokens [7, 8, IM_END]; row 1: language ID (no CTC).
    input_ids = torch.tensor([[1, 5, 7, 8, IM_END, PAD], [1, 5, 9, IM_END, PAD, PAD]])
    labels = torch.tensor([[-100, -100, 7, 8, IM_END, -100], [-100, -100, 9, IM_END, -100, -100]])
    return {"input_ids": input_ids, "labels": labels, "ids": ["a", "b"], "tasks": ["asr", "lid"]}


def test_targets_are_the_asr_transcript_without_end_tokens():
    targets = ctc_targets(_batch(), {PAD, IM_END})
    assert targets[0].tolist() == [7, 8]
    assert targets[1] is None


def test_loss_matches_a_hand_computed_case():
    # One clip, 2 frames, vocabulary {blank, x}; target "x". Frame log-probs uniform (log 1/2 each).
    # Paths emitting "x": (x, x), (x, blank), (blank, x): probability 3/4, so the loss is -log(3/4).
    logits = torch.zeros(1, 2, 2)
    loss = ctc_loss_sum(logits, torch.tensor([2]), [torch.tensor([1])], blank=0)
    assert math.isclose(loss.item(), -math.log(0.75), rel_tol=1e-6)


def test_loss_sums_over_clips_and_skips_those_without_targets():
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 5, requires_grad=True)
    lengths = torch.tensor([6, 4, 5])
    targets = [torch.tensor([1, 2]), None, torch.tensor([3])]  # the caller passes only clips 0 and 2
    keep = torch.tensor([0, 2])
    loss = ctc_loss_sum(logits[keep], lengths[keep], [targets[0], targets[2]], blank=0)
    log_probs = F.log_softmax(logits, -1)
    expected = sum(
        F.ctc_loss(
            log_probs[i, : lengths[i]].unsqueeze(1),
            targets[i].unsqueeze(0),
            lengths[i : i + 1],
            torch.tensor([len(targets[i])]),
            blank=0,
            reduction="sum",
        )
        for i in (0, 2)
    )
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert logits.grad[1].abs().sum() == 0 and logits.grad[0].abs().sum() > 0


def test_no_target_gives_zero_with_a_graph():
    logits = torch.randn(2, 4, 3, requires_grad=True)
    loss = ctc_loss_sum(logits[:0], torch.tensor([], dtype=torch.long), [], blank=0)
    assert loss.item() == 0.0 and loss.requires_grad
