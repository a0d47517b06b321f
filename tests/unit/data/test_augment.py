"""Audio augmentation: each step against its definition, and every draw a pure function of
(seed, position, clip)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lalm.config.augment import AugmentConfig, augment_errors
from lalm.data.augment import NoiseBank, add_noise, clip_rng, perturb_waveform, spec_augment

RATE = 16_000


def _tone(seconds: float = 1.0, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def noise_manifest(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "hum.wav", (0.1 * rng.standard_normal(RATE // 2)).astype(np.float32), RATE)
    path = tmp_path / "noise.jsonl"
    path.write_text(json.dumps({"audio": "hum.wav"}) + "\n")
    return path


def test_speed_perturbation_changes_length_by_the_factor() -> None:
    wave = _tone(2.0)
    for factor in (0.9, 1.1):
        out = perturb_waveform(wave, AugmentConfig(speed_factors=[factor]), clip_rng(0, 0, 0))
        assert abs(len(out) - len(wave) / factor) <= 2
        # A 440 Hz tone played `factor` times faster is a 440 x factor Hz tone.
        spectrum = np.abs(np.fft.rfft(out))
        peak = np.argmax(spectrum) * RATE / len(out)
        assert peak == pytest.approx(440 * factor, abs=2)


def test_gain_in_db() -> None:
    wave = _tone()
    out = perturb_waveform(wave, AugmentConfig(gain_db=[6.0, 6.0]), clip_rng(0, 0, 0))
    assert np.max(np.abs(out)) / np.max(np.abs(wave)) == pytest.approx(10 ** (6 / 20), rel=1e-5)


def test_noise_at_the_drawn_snr() -> None:
    wave, noise = _tone(), np.random.default_rng(1).standard_normal(RATE).astype(np.float32)
    out = add_noise(wave, noise, 10.0)
    added = out.astype(np.float64) - wave
    snr = 10 * np.log10(np.mean(wave.astype(np.float64) ** 2) / np.mean(added**2))
    assert snr == pytest.approx(10.0, abs=1e-3)


def test_noise_from_a_manifest_is_added_with_probability(noise_manifest: Path) -> None:
    cfg = AugmentConfig(noise_manifest=str(noise_manifest), noise_probability=1.0, snr_db=[0.0, 0.0])
    wave = _tone(1.3)  # longer than the 0.5-s noise: the noise is tiled
    out = perturb_waveform(wave, cfg, clip_rng(0, 5, 0), NoiseBank(str(noise_manifest)))
    assert out.shape == wave.shape
    added = out.astype(np.float64) - wave
    assert np.mean(added**2) == pytest.approx(np.mean(wave.astype(np.float64) ** 2), rel=1e-3)
    never = AugmentConfig(noise_manifest=str(noise_manifest), noise_probability=0.0)
    assert np.array_equal(
        perturb_waveform(wave, never, clip_rng(0, 5, 0), NoiseBank(str(noise_manifest))), wave
    )


def test_draws_are_a_pure_function_of_seed_position_and_clip(noise_manifest: Path) -> None:
    cfg = AugmentConfig(
        speed_factors=[0.9, 1.0, 1.1],
        gain_db=[-6.0, 6.0],
        noise_manifest=str(noise_manifest),
        noise_probability=0.5,
    )
    bank, wave = NoiseBank(str(noise_manifest)), _tone()

    def run(seed: int, position: int, clip: int) -> np.ndarray:
        return perturb_waveform(wave, cfg, clip_rng(seed, position, clip), bank)

    assert np.array_equal(run(3, 17, 0), run(3, 17, 0))
    outs = [run(3, position, 0) for position in range(12)]
    assert len({(len(o), round(float(np.abs(o).max()), 6)) for o in outs}) > 3  # positions differ
    assert not np.array_equal(run(3, 17, 0), run(4, 17, 0))
    assert not np.array_equal(run(3, 17, 0), run(3, 17, 1))


def test_spec_augment_masks_only_real_frames_and_is_deterministic() -> None:
    features = torch.arange(80 * 100, dtype=torch.float32).reshape(80, 100)
    cfg = AugmentConfig(time_masks=2, time_mask_frames=10, freq_masks=2, freq_mask_bins=8)
    out = spec_augment(features, 60, cfg, clip_rng(0, 1, 0, stream=1))
    assert torch.equal(out[:, 60:], features[:, 60:])  # padding frames untouched
    fill = features[:, :60].mean()
    changed = out != features
    assert changed.any() and torch.all(out[changed] == fill)
    assert torch.equal(out, spec_augment(features, 60, cfg, clip_rng(0, 1, 0, stream=1)))
    assert torch.equal(features, torch.arange(80 * 100, dtype=torch.float32).reshape(80, 100))


def test_config_mistakes_and_enabled() -> None:
    assert not AugmentConfig().enabled
    assert AugmentConfig(time_masks=2, time_mask_frames=5).enabled
    errors = augment_errors(AugmentConfig(speed_factors=[3.0], gain_db=[6.0, -6.0], noise_probability=0.5))
    assert len(errors) == 3
    assert "speed_factors must lie in [0.5, 2.0]" in errors[0]
    assert "gain_db must be [low, high]" in errors[1]
    assert "needs stage.augment.noise_manifest" in errors[2]


def test_collator_masks_augmented_examples_only(corpus_dir, processor) -> None:
    from lalm.data.collators import ConversationCollator
    from lalm.data.dataset import ManifestDataset

    manifest = str(corpus_dir / "pretrain" / "train.jsonl")
    cfg = AugmentConfig(time_masks=2, time_mask_frames=30, freq_masks=2, freq_mask_bins=20)
    plain = ManifestDataset.from_manifest(manifest, "pretrain")
    masked = ManifestDataset.from_manifest(manifest, "pretrain").augmented(cfg, seed=5)
    collate = ConversationCollator(processor)
    clean = collate([plain[i] for i in range(4)])
    first = collate([masked[(i, 100 + i)] for i in range(4)])
    again = collate([masked[(i, 100 + i)] for i in range(4)])
    later = collate([masked[(i, 200 + i)] for i in range(4)])
    assert torch.equal(first["input_ids"], clean["input_ids"])  # masks change features, not tokens
    assert not torch.equal(first["input_features"], clean["input_features"])
    assert torch.equal(first["input_features"], again["input_features"])  # a function of the position
    assert not torch.equal(first["input_features"], later["input_features"])
    padding = clean["feature_attention_mask"] == 0
    assert torch.equal(
        first["input_features"].transpose(1, 2)[padding], clean["input_features"].transpose(1, 2)[padding]
    )
    with pytest.raises(ValueError, match="needs \\(index, position\\) keys"):
        masked[0]
