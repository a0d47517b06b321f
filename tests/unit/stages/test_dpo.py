"""The DPO stage's loss on a real batch: the preference loss plus rpo_alpha x the chosen NLL."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from lalm.config.train import DpoStageConfig
from lalm.data.collators import PreferenceCollator
from lalm.data.dataset import ManifestDataset
from lalm.losses.token import sequence_logps
from lalm.stages.base import logits_of
from lalm.stages.dpo import DpoStage


@pytest.mark.parametrize("loss", ["sigmoid", "ipo"])
def test_rpo_adds_the_chosen_per_token_nll(tiny, corpus_dir, loss: str) -> None:  # noqa: ANN001
    model, processor = tiny
    policy = copy.deepcopy(model).eval()
    dataset = ManifestDataset.from_manifest(str(corpus_dir / "dpo" / "train.jsonl"), "dpo")
    batch = PreferenceCollator(processor)([dataset[0], dataset[1], dataset[2]])
    beta, alpha = 0.2, 0.5
    stage = DpoStage(DpoStageConfig(beta=beta, loss=loss, rpo_alpha=alpha), copy.deepcopy(policy))
    with torch.no_grad():
        out = stage.forward(policy, batch)
        logps, counts = sequence_logps(logits_of(policy, batch), batch["labels"])
    pairs = batch["num_pairs"]
    chosen_nll = -logps[:pairs] / counts[:pairs]  # per-token NLL of each chosen response
    # Policy == reference: the margin is 0, so sigmoid gives log 2 and IPO (0 - 1/(2 beta))^2 per pair.
    preference = math.log(2) if loss == "sigmoid" else (1 / (2 * beta)) ** 2
    expected = pairs * preference + alpha * float(chosen_nll.sum())
    assert out.units == pairs == 3
    assert float(out.loss) == pytest.approx(expected, rel=1e-5)
    assert out.metrics["nll_loss"] == pytest.approx(float(chosen_nll.sum()), rel=1e-5)
    without = DpoStage(DpoStageConfig(beta=beta, loss=loss), copy.deepcopy(policy))
    with torch.no_grad():
        assert float(without.forward(policy, batch).loss) == pytest.approx(pairs * preference, rel=1e-5)
