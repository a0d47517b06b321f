"""Typed config of training-time audio augmentation (`stage.augment`; lalm.data.augment)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AugmentConfig:
    """Each clip's augmentation is drawn from (data seed, sample position, clip index), so a resumed
    run augments every example exactly as the uninterrupted run did. Everything is off by default and
    evaluation never augments.

    speed_factors: one factor drawn per clip and applied by resampling (tempo and pitch together, as
        Kaldi's and ESPnet's speed perturbation do); e.g. [0.9, 1.0, 1.1]. [] = off.
    gain_db: [low, high]: a gain drawn uniformly in dB. [] = off.
    noise_manifest: JSONL whose lines each hold {"audio": path or {"path", "offset", "duration"}} of a
        noise recording (relative paths against the manifest's folder); with noise_probability a clip
        gets a random stretch of a random noise added at an SNR drawn uniformly in snr_db (dB).
    time_masks x time_mask_frames, freq_masks x freq_mask_bins: SpecAugment (Park et al., 2019) on the
        log-mels: that many masks of up to that many mel frames (10 ms each) / mel bins, filled with
        the clip's mean, inside the clip's real frames only.
    """

    speed_factors: list[float] = field(default_factory=list)
    gain_db: list[float] = field(default_factory=list)
    noise_manifest: str | None = None
    noise_probability: float = 0.0
    snr_db: list[float] = field(default_factory=lambda: [5.0, 20.0])
    time_masks: int = 0
    time_mask_frames: int = 0
    freq_masks: int = 0
    freq_mask_bins: int = 0

    @property
    def enabled(self) -> bool:
        return bool(
            self.speed_factors
            or self.gain_db
            or (self.noise_manifest and self.noise_probability > 0)
            or (self.time_masks and self.time_mask_frames)
            or (self.freq_masks and self.freq_mask_bins)
        )


def augment_errors(cfg: AugmentConfig, where: str = "stage.augment") -> list[str]:
    """Every mistake in an augmentation config, as messages that say what to change."""
    errors = []
    if any(not 0.5 <= f <= 2.0 for f in cfg.speed_factors):
        errors.append(f"{where}.speed_factors must lie in [0.5, 2.0], got {cfg.speed_factors}")
    for name in ("gain_db", "snr_db"):
        pair = getattr(cfg, name)
        if pair and (len(pair) != 2 or pair[0] > pair[1]):
            errors.append(f"{where}.{name} must be [low, high] with low <= high, got {pair}")
    if not 0 <= cfg.noise_probability <= 1:
        errors.append(f"{where}.noise_probability must be in [0, 1], got {cfg.noise_probability}")
    if cfg.noise_probability > 0 and not cfg.noise_manifest:
        errors.append(f"{where}.noise_probability > 0 needs {where}.noise_manifest")
    for name in ("time_masks", "time_mask_frames", "freq_masks", "freq_mask_bins"):
        if getattr(cfg, name) < 0:
            errors.append(f"{where}.{name} must be >= 0, got {getattr(cfg, name)}")
    return errors
