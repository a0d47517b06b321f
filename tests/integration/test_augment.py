"""Augmented training: the audio really changes, and a resumed run augments exactly as the
uninterrupted one did (draws come from (seed, stream position, clip))."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.integration.runs import run_stage

SETTINGS = ("optim.schedule=constant", "optim.warmup_steps=0", "trainer.eval_every=0", "data.num_workers=0")


@pytest.fixture(scope="module")
def noise_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(0)
    sf.write(folder / "pink.wav", (0.05 * rng.standard_normal(24_000)).astype(np.float32), 16_000)
    (folder / "noise.jsonl").write_text(json.dumps({"audio": "pink.wav"}) + "\n")
    return folder / "noise.jsonl"


def _augment(noise: Path) -> list[str]:
    return [
        "stage.augment.speed_factors=[0.9,1.1]",
        "stage.augment.gain_db=[-6,6]",
        f"stage.augment.noise_manifest={noise}",
        "stage.augment.noise_probability=0.5",
        "stage.augment.time_masks=2",
        "stage.augment.time_mask_frames=20",
        "stage.augment.freq_masks=2",
        "stage.augment.freq_mask_bins=8",
    ]


def _records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "loss" in r and "step" in r]


def test_augmented_resume_is_exact_and_augmentation_is_applied(corpus_dir, noise_manifest, tmp_path, capsys):
    augment = _augment(noise_manifest)
    run_stage(corpus_dir, tmp_path / "clean", "pretrain", *SETTINGS, "trainer.max_steps=4")
    run_stage(corpus_dir, tmp_path / "whole", "pretrain", *SETTINGS, *augment, "trainer.max_steps=4")
    first = [*SETTINGS, *augment, "trainer.save_every=2"]
    run_stage(corpus_dir, tmp_path / "split", "pretrain", *first, "trainer.max_steps=2")
    capsys.readouterr()
    run_stage(corpus_dir, tmp_path / "split", "pretrain", *first, "trainer.max_steps=4")
    assert "resuming from" in capsys.readouterr().out
    clean, whole = _records(tmp_path / "clean" / "pretrain"), _records(tmp_path / "whole" / "pretrain")
    split = _records(tmp_path / "split" / "pretrain")
    assert [r["step"] for r in split] == [1, 2, 3, 4]
    # Speed perturbation changes every clip's length, so the audio token counts differ from clean.
    assert [r["tokens"] for r in whole] != [r["tokens"] for r in clean]
    assert [r["tokens"] for r in split] == [r["tokens"] for r in whole]
    assert [r["loss"] for r in split] == pytest.approx([r["loss"] for r in whole], rel=1e-5)
    assert all(np.isfinite(r["loss"]) for r in whole)


def test_evaluation_never_augments(corpus_dir, noise_manifest, tmp_path):
    trainer, _ = run_stage(corpus_dir, tmp_path, "pretrain", *SETTINGS, *_augment(noise_manifest))
    assert trainer.data.train.augment is not None and trainer.data.dev.augment is None
    example = trainer.data.dev[0]
    assert "augment" not in example
