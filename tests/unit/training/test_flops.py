"""Model FLOPs per step (PERF.md's formula) from what a stage trains."""

from __future__ import annotations

import copy

import pytest

from lalm.models.training import AudioLanguageModel
from lalm.training.flops import step_flops


def _counts(model) -> tuple[int, int]:  # noqa: ANN001
    llm = sum(p.numel() for p in model.model.language_model.parameters()) + model.lm_head.weight.numel()
    return llm, sum(p.numel() for p in model.model.audio_tower.parameters())


@pytest.mark.parametrize(
    ("encoder", "llm", "dpo", "llm_factor", "encoder_factor"),
    [
        (True, True, False, 6, 6),  # pretraining / SFT: everything trains
        (False, True, True, 8, 2),  # DPO: policy 6 + reference 2; frozen encoder, forward only
        (False, False, False, 6, 2),  # projector only: the gradient still flows through the LLM
    ],
)
def test_rates_follow_what_trains(tiny, encoder, llm, dpo, llm_factor, encoder_factor) -> None:  # noqa: ANN001
    model, _ = tiny
    wrapped = AudioLanguageModel(copy.deepcopy(model))
    wrapped.base.model.audio_tower.requires_grad_(encoder)
    wrapped.base.model.language_model.requires_grad_(llm)
    wrapped.base.lm_head.requires_grad_(llm)
    n_llm, n_enc = _counts(model)
    rates = step_flops(wrapped, dpo)
    assert rates.per_llm_position == llm_factor * n_llm
    assert rates.per_encoder_position == encoder_factor * n_enc
    # 100 real LLM positions and 2 s of audio (200 mel frames = 100 encoder positions).
    assert rates.of(100, 200) == 100 * llm_factor * n_llm + 100 * encoder_factor * n_enc
