"""Audio decoding: soundfile for I/O, soxr for resampling, mean over channels for mono.

datasets' own Audio feature needs torchcodec, which does not load on our CPU machines, so manifests
keep file paths and we decode here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from lalm.errors import AudioLoadError

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class AudioRef:
    """Where a clip lives: a file, and optionally a slice of it (seconds)."""

    path: str
    offset: float = 0.0
    duration: float | None = None

    def to_dict(self) -> dict[str, float | str | None]:
        return {"path": self.path, "offset": float(self.offset), "duration": self.duration}


def load_audio(ref: AudioRef, sample_rate: int = SAMPLE_RATE, source: str | None = None) -> np.ndarray:
    """Decode `ref` to a float32 mono waveform at `sample_rate`. Shape: (num_samples,).

    `source` ("manifest.jsonl:12") is put in the error message of a file that cannot be used.
    """
    path = Path(ref.path)
    if not path.is_file():
        raise AudioLoadError(ref.path, "no such file", source)
    if ref.offset < 0 or (ref.duration is not None and ref.duration <= 0):
        raise AudioLoadError(ref.path, f"offset must be >= 0 and duration > 0, got {ref}", source)
    try:
        info = sf.info(str(path))
        start = int(round(ref.offset * info.samplerate))
        frames = -1 if ref.duration is None else int(round(ref.duration * info.samplerate))
        if info.frames == 0:
            raise AudioLoadError(ref.path, "contains no samples", source)
        if start >= info.frames:
            raise AudioLoadError(
                ref.path, f"offset {ref.offset}s is past the end ({info.duration:.3f}s)", source
            )
        data, file_rate = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioLoadError(ref.path, f"unreadable ({err})", source) from err
    if data.shape[0] == 0:
        raise AudioLoadError(ref.path, "contains no samples", source)
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if file_rate != sample_rate:
        wave = soxr.resample(wave, file_rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(wave, dtype=np.float32)


def write_audio(path: str | Path, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Write a mono 16-bit PCM WAV; returns its duration in seconds (from the written sample count)."""
    if wave.ndim != 1:
        raise ValueError(f"write_audio writes mono: expected a 1-D waveform, got shape {wave.shape}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    clipped = np.clip(wave, -1.0, 1.0)
    sf.write(str(path), clipped, sample_rate, subtype="PCM_16")
    return len(clipped) / sample_rate
