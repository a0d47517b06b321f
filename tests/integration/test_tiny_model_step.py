"""The tiny model runs forward and backward on batches of real synthetic speech, for every stage."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lalm.config.model import TinyModelConfig
from lalm.data.collators import IGNORE_INDEX, ConversationCollator, PreferenceCollator, model_inputs
from lalm.data.dataset import ManifestDataset
from lalm.models.builders import build_tiny
from tests.conftest import tiny_config

COLLATORS = {"pretrain": ConversationCollator, "sft": ConversationCollator, "dpo": PreferenceCollator}


@pytest.mark.parametrize("stage", ["pretrain", "sft", "dpo"])
def test_forward_backward_on_real_speech(corpus_dir, stage):
    model, processor = build_tiny(tiny_config(corpus_dir))
    model.train()
    dataset = ManifestDataset.from_manifest(str(corpus_dir / stage / "train.jsonl"), stage)
    batch = COLLATORS[stage](processor)([dataset[i] for i in range(4)])
    assert "input_features" in batch
    logits = model(**model_inputs(batch)).logits
    # Token loss computed by hand: next-token cross-entropy on supervised positions only.
    labels = batch["labels"][:, 1:]
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
    assert torch.isfinite(loss) and 5.0 < loss.item() < 10.0  # ~log(vocab) at random init
    assert int((labels != IGNORE_INDEX).sum()) >= 8
    loss.backward()
    for name in (
        "model.audio_tower.layers.0.fc1.weight",
        "model.multi_modal_projector.linear.weight",
        "model.language_model.layers.0.mlp.up_proj.weight",
        "model.audio_tower.conv1.weight",
    ):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_audio_changes_the_prediction(corpus_dir, tiny):
    """The encoder output reaches the LLM: different audio, different logits for the same text."""
    model, processor = tiny
    model.eval()
    dataset = ManifestDataset.from_manifest(str(corpus_dir / "pretrain" / "train.jsonl"), "pretrain")
    batch = ConversationCollator(processor)([dataset[0]])
    inputs = model_inputs(batch)
    with torch.no_grad():
        base = model(**inputs).logits
        inputs["input_features"] = torch.flip(inputs["input_features"], dims=[-1])
        changed = model(**inputs).logits
    assert not torch.allclose(base, changed)


def test_tiny_config_window_sets_encoder_positions(corpus_dir):
    model, processor = build_tiny(
        TinyModelConfig(**{**tiny_config(corpus_dir).__dict__, "window_seconds": 3})
    )
    assert processor.feature_extractor.n_samples == 48_000
    assert model.config.audio_config.max_source_positions == 150
