"""The DPO reference cache: the same loss as a live reference, its key, and stale files refused."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from lalm.config.train import DpoStageConfig
from lalm.data.collators import PreferenceCollator
from lalm.data.dataset import ManifestDataset
from lalm.models.training import AudioLanguageModel
from lalm.stages.dpo import DpoStage
from lalm.training.reference_cache import (
    StaleReferenceCache,
    WithReference,
    cache_key,
    compute_table,
    load_table,
    save_table,
)
from tests.unit.stages.batches import marker


def _setup(tiny, corpus_dir):  # noqa: ANN001, ANN202
    model, processor = tiny
    full = ManifestDataset.from_manifest(str(corpus_dir / "dpo" / "train.jsonl"), "dpo")
    dataset = ManifestDataset(full.records.select(range(7)), "dpo")  # 7: the last batch of 2 is padded
    policy = AudioLanguageModel(copy.deepcopy(model)).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # a policy unlike the reference, so the margins are not 0
        for parameter in policy.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    reference = AudioLanguageModel(copy.deepcopy(model)).eval()
    return dataset, policy, reference, PreferenceCollator(processor)


def test_cached_reference_gives_the_live_loss_and_metrics(tiny, corpus_dir) -> None:  # noqa: ANN001
    dataset, policy, reference, collator = _setup(tiny, corpus_dir)
    live = DpoStage(DpoStageConfig(beta=0.3, rpo_alpha=0.5), reference)
    table = compute_table(
        lambda b: live.reference_sequence_logps(None, b)[0],  # a reference model: the engine is unused
        dataset,
        collator,
        micro_batch=2,
        device=torch.device("cpu"),
    )
    assert len(table) == len(dataset) and all(c < 0 and r < 0 for c, r in table.values())
    cached = DpoStage(DpoStageConfig(beta=0.3, rpo_alpha=0.5), copy.deepcopy(reference))
    cached.release_reference()
    assert cached.reference is None and cached.cached
    wrapped = WithReference(dataset, table, "train")
    indices = [3, 0, 5]  # other batches than the cache's, so other padding
    with torch.no_grad():
        expected = live.forward(policy, collator([dataset[i] for i in indices]))
        batch = collator([wrapped[i] for i in indices])
        assert batch["reference_logps"].shape == (6,)
        out = cached.forward(policy, batch)
    assert math.isfinite(float(out.loss)) and float(expected.loss) != pytest.approx(3 * math.log(2))
    torch.testing.assert_close(out.loss, expected.loss, rtol=1e-5, atol=1e-5)
    for name, value in expected.metrics.items():
        torch.testing.assert_close(out.metrics[name], value, rtol=1e-5, atol=1e-5, msg=name)
    # A batch without the cached values is an error once the reference is released.
    with pytest.raises(ValueError, match="no cached reference"):
        cached.forward(policy, collator([dataset[0]]))


def test_placeholder_and_dropped_examples_in_a_cached_batch(tiny, corpus_dir) -> None:  # noqa: ANN001
    dataset, _, _, collator = _setup(tiny, corpus_dir)
    wrapped = WithReference(dataset, {str(dataset[0]["id"]): (-3.0, -5.0)}, "train")
    batch = collator([wrapped[0], marker("gone")])
    assert batch["reference_logps"].tolist() == [-3.0, -5.0]
    assert [d["id"] for d in batch["dropped"]] == ["gone"]
    with pytest.raises(KeyError, match="no cached reference log-probs"):
        wrapped[1]
    assert "reference_logps" not in collator([dataset[0]])  # uncached data: the live reference


def test_the_key_follows_weights_data_and_settings(tmp_path: Path) -> None:
    reference = tmp_path / "ref"
    reference.mkdir()
    (reference / "model.safetensors").write_bytes(b"weights")
    manifest = tmp_path / "train.jsonl"
    manifest.write_text('{"id": "a"}\n')
    key = cache_key(str(reference), {"train": str(manifest)}, {"max_length": 64})
    path = tmp_path / "reference_logps.pt"
    save_table(path, key, {"train": {"a": (-1.5, -2.5)}})
    assert load_table(path, key) == {"train": {"a": (-1.5, -2.5)}}
    assert load_table(tmp_path / "none.pt", key) is None
    changes = {
        "reference checkpoint": lambda: (reference / "model.safetensors").write_bytes(b"other weights"),
        "manifests": lambda: manifest.write_text('{"id": "a"}\n{"id": "b"}\n'),
    }
    for what, change in changes.items():
        change()
        with pytest.raises(StaleReferenceCache, match=what):
            load_table(path, cache_key(str(reference), {"train": str(manifest)}, {"max_length": 64}))
    with pytest.raises(StaleReferenceCache, match="max_length: 64 -> 128"):
        load_table(path, {**key, "settings": {"max_length": 128}})
