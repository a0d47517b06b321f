"""The DPO stage's loss on a real batch: the preference loss plus rpo_alpha x the chosen NLL; placeholder
pairs and all-dropped micro-batches leave it alone."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch

from lalm.config.train import DpoStageConfig
from lalm.data.collators import PreferenceCollator, model_inputs
from lalm.data.dataset import ManifestDataset
from lalm.losses.full_logits import sequence_logps
from lalm.stages.dpo import DpoStage
from tests.unit.stages.batches import marker, text_only_pair, without_placeholder


@pytest.mark.parametrize("loss", ["sigmoid", "ipo", "robust"])
def test_rpo_adds_the_chosen_per_token_nll(tiny, corpus_dir, loss: str) -> None:  # noqa: ANN001
    model, processor = tiny
    policy = copy.deepcopy(model).eval()
    dataset = ManifestDataset.from_manifest(str(corpus_dir / "dpo" / "train.jsonl"), "dpo")
    batch = PreferenceCollator(processor)([dataset[0], dataset[1], dataset[2]])
    beta, alpha = 0.2, 0.5
    smoothing = 0.1 if loss == "robust" else 0.0  # robust needs label_smoothing > 0 (and gets it)
    config = DpoStageConfig(beta=beta, loss=loss, rpo_alpha=alpha, label_smoothing=smoothing)
    stage = DpoStage(config, copy.deepcopy(policy))
    with torch.no_grad():
        out = stage.forward(policy, batch)
        logps, counts = sequence_logps(policy(**model_inputs(batch)).logits, batch["labels"])
    pairs = batch["num_pairs"]
    chosen_nll = -logps[:pairs] / counts[:pairs]  # per-token NLL of each chosen response
    # Policy == reference: the margin is 0, so sigmoid and robust give log 2 and IPO (0 - 1/(2 beta))^2
    # per pair.
    preference = (1 / (2 * beta)) ** 2 if loss == "ipo" else math.log(2)
    expected = pairs * preference + alpha * float(chosen_nll.sum())
    assert out.units == pairs == 3
    assert float(out.loss) == pytest.approx(expected, rel=1e-5)
    assert float(out.metrics["nll_loss"]) == pytest.approx(float(chosen_nll.sum()), rel=1e-5)
    without = DpoStage(dataclasses.replace(config, rpo_alpha=0.0), copy.deepcopy(policy))
    with torch.no_grad():
        assert float(without.forward(policy, batch).loss) == pytest.approx(pairs * preference, rel=1e-5)


@pytest.mark.parametrize("loss", ["sigmoid", "ipo", "hinge", "robust"])
def test_a_placeholder_pair_changes_neither_loss_nor_units_nor_metrics(tiny, loss: str) -> None:  # noqa: ANN001
    """Text-only prompts get a weight-0 placeholder pair (so the encoder runs); loss, pairs and every
    metric equal those of the batch without it, and they stay finite (its rows have 0 targets)."""
    model, processor = tiny
    policy = copy.deepcopy(model).eval()
    perturbed = copy.deepcopy(model).eval()  # a reference unlike the policy, so the margins are not 0
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in perturbed.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    smoothing = 0.1 if loss == "robust" else 0.0
    stage = DpoStage(DpoStageConfig(beta=0.2, loss=loss, rpo_alpha=0.5, label_smoothing=smoothing), perturbed)
    pairs = [text_only_pair("a", "Yes, it is.", "No."), text_only_pair("b", "Monday.", "Friday at noon.")]
    batch = PreferenceCollator(processor)(pairs)
    bare = without_placeholder(batch)
    with torch.no_grad():
        out, ref = stage.forward(policy, batch), stage.forward(policy, bare)
    assert out.units == ref.units == stage.count_units(batch) == stage.count_units(bare) == 2
    assert float(out.loss) == pytest.approx(float(ref.loss), rel=1e-5)
    metrics, expected = ({k: float(v) for k, v in m.items()} for m in (out.metrics, ref.metrics))
    assert metrics == pytest.approx(expected, rel=1e-5, abs=1e-6) and len(metrics) >= 6
    assert all(math.isfinite(v) for v in metrics.values())


def test_an_all_dropped_dpo_micro_batch_is_a_weight_0_step(tiny) -> None:  # noqa: ANN001
    model, processor = tiny
    policy = copy.deepcopy(model).train()
    stage = DpoStage(DpoStageConfig(loss="ipo", rpo_alpha=1.0), copy.deepcopy(model).eval())
    batch = PreferenceCollator(processor)([marker("p1")])
    assert batch["num_pairs"] == 1 and batch["ids"] == ["<placeholder>"] and stage.count_units(batch) == 0
    out = stage.forward(policy, batch)
    assert (
        float(out.loss.detach()) == 0.0
        and out.units == 0
        and {float(v) for v in out.metrics.values()} == {0.0}
    )
    out.loss.backward()
    encoder = [p.grad for n, p in policy.named_parameters() if p.requires_grad and "audio_tower" in n]
    assert encoder and all(g is not None and not g.any() for g in encoder)
