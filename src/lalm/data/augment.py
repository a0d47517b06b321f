"""Training-time audio augmentation, drawn deterministically from (seed, sample position, clip).

Waveform level (before features): speed perturbation through soxr's resampler, gain, additive noise at
a random SNR. Feature level (on the log-mels): SpecAugment time and frequency masks. No augmentation
library is used because the ones that exist (torchaudio's transforms, audiomentations) draw from global
RNG state; a resumed run must redraw exactly what the uninterrupted one drew, so every draw here comes
from a numpy Generator seeded by (seed, position, clip) — the position in the sample stream, so an
example seen in two epochs gets two different draws.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import soxr
import torch

from lalm.config.augment import AugmentConfig
from lalm.data.audio import SAMPLE_RATE, AudioRef, load_audio

# SeedSequence keys: the waveform draws of a clip, and (+ window number) its feature masks' draws.
WAVE_STREAM, FEATURE_STREAM = 0, 1


def clip_rng(seed: int, position: int, clip: int, stream: int = WAVE_STREAM) -> np.random.Generator:
    """The Generator of one clip's draws: a pure function of its arguments (numpy's SeedSequence)."""
    return np.random.default_rng([seed, position, clip, stream])


@dataclass
class NoiseBank:
    """The noise recordings of a noise manifest, decoded on first use (once per DataLoader worker)."""

    manifest: str
    sample_rate: int = SAMPLE_RATE

    @cached_property
    def clips(self) -> list[np.ndarray]:
        path = Path(self.manifest)
        if not path.is_file():
            raise FileNotFoundError(f"noise manifest not found: {path}")
        clips = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            ref = json.loads(line)["audio"]
            ref = {"path": ref} if isinstance(ref, str) else ref
            file = Path(ref["path"]) if Path(ref["path"]).is_absolute() else path.parent / ref["path"]
            source = f"{path}:{number}"
            clips.append(
                load_audio(
                    AudioRef(str(file), ref.get("offset", 0.0), ref.get("duration")), self.sample_rate, source
                )
            )
        if not clips:
            raise ValueError(f"noise manifest {path} holds no clips")
        return clips


def _stretch(noise: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """`length` samples of the noise from a random start, tiled when the noise is shorter."""
    if len(noise) < length:
        noise = np.tile(noise, length // len(noise) + 1)
    start = int(rng.integers(0, len(noise) - length + 1))
    return noise[start : start + length]


def add_noise(wave: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """wave + noise scaled so that power(wave) / power(noise) = 10^(snr_db / 10). (T,) -> (T,)"""
    signal_power = float(np.mean(wave.astype(np.float64) ** 2))
    noise_power = float(np.mean(noise.astype(np.float64) ** 2))
    if signal_power == 0 or noise_power == 0:
        return wave
    scale = np.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
    return (wave + scale * noise).astype(np.float32)


def perturb_waveform(
    wave: np.ndarray,
    cfg: AugmentConfig,
    rng: np.random.Generator,
    noises: NoiseBank | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Speed, then gain, then noise, each as configured. (T,) float32 -> (T',) float32, T' ~ T / speed.

    Every draw is made whether or not its step is on, in a fixed order, so switching one step off does
    not change what the others draw."""
    factor = float(rng.choice(cfg.speed_factors)) if cfg.speed_factors else 1.0
    gain = float(rng.uniform(cfg.gain_db[0], cfg.gain_db[1])) if cfg.gain_db else 0.0
    noisy = rng.random() < cfg.noise_probability
    snr = float(rng.uniform(cfg.snr_db[0], cfg.snr_db[1]))
    if factor != 1.0:
        # Played `factor` times faster: the samples are taken as recorded at rate x factor.
        wave = soxr.resample(wave, sample_rate * factor, sample_rate).astype(np.float32)
    if gain:
        wave = (wave * 10 ** (gain / 20)).astype(np.float32)
    if noisy and noises is not None:
        noise = noises.clips[int(rng.integers(len(noises.clips)))]
        wave = add_noise(wave, _stretch(noise, len(wave), rng), snr)
    return wave


def spec_augment(
    features: torch.Tensor, real_frames: int, cfg: AugmentConfig, rng: np.random.Generator
) -> torch.Tensor:
    """SpecAugment masks on one clip's log-mels (mel, frames), inside its first `real_frames` frames;
    masked cells take the mean of the clip's real cells. Returns a new tensor; the input is unchanged."""
    out = features.clone()
    mel, _ = out.shape
    real = out[:, :real_frames]
    fill = real.mean() if real.numel() else out.new_zeros(())
    for _ in range(cfg.freq_masks):
        width = int(rng.integers(0, cfg.freq_mask_bins + 1))
        start = int(rng.integers(0, max(mel - width, 0) + 1))
        out[start : start + width, :real_frames] = fill
    for _ in range(cfg.time_masks):
        width = min(int(rng.integers(0, cfg.time_mask_frames + 1)), real_frames)
        start = int(rng.integers(0, max(real_frames - width, 0) + 1))
        out[:, start : start + width] = fill
    return out
