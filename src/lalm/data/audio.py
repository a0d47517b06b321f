"""Audio decoding: soundfile for I/O, soxr for resampling, mean over channels for mono.

datasets' own Audio feature needs torchcodec, which does not load on our CPU machines, so manifests
keep file paths and we decode here.

A clip that cannot be used raises AudioLoadError with a `reason` the data pipeline counts it under;
resampling and down-mixing are normal and never an error. Checked, in this order:

    missing_audio      the file is gone (it existed when the manifest was validated)
    empty_audio        0 bytes, or a valid header with no samples
    unreadable_audio   not audio soundfile can open (a text file named .wav, an unknown format)
    truncated_audio    fewer samples than the header declares (a WAV whose data chunk runs past the end
                       of the file: libsndfile quietly shortens it; a FLAC that stops decoding midway)
    duration_mismatch  the manifest's slice (offset, duration) reaches past the real audio by more than
                       the tolerance: the file changed since the manifest was written
    nonfinite_audio    NaN or infinite samples (float WAVs), which would turn a whole step's loss to NaN
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
import soxr

from lalm.errors import AudioLoadError

SAMPLE_RATE = 16_000
# DataConfig.duration_tolerance_s's default: a slice may fall short of its manifest duration by this much.
DURATION_TOLERANCE_S = 0.1

MISSING_AUDIO = "missing_audio"
EMPTY_AUDIO = "empty_audio"
UNREADABLE_AUDIO = "unreadable_audio"
TRUNCATED_AUDIO = "truncated_audio"
NONFINITE_AUDIO = "nonfinite_audio"
DURATION_MISMATCH = "duration_mismatch"
AUDIO_REASONS = (
    MISSING_AUDIO,
    EMPTY_AUDIO,
    UNREADABLE_AUDIO,
    TRUNCATED_AUDIO,
    NONFINITE_AUDIO,
    DURATION_MISMATCH,
)
# Sizes a streaming WAV writer leaves in the data chunk header when it cannot seek back: not truncation.
_UNSET_CHUNK_SIZES = (0, 0xFFFFFFFF)


@dataclass(frozen=True)
class AudioRef:
    """Where a clip lives: a file, and optionally a slice of it (seconds)."""

    path: str
    offset: float = 0.0
    duration: float | None = None

    def to_dict(self) -> dict[str, float | str | None]:
        return {"path": self.path, "offset": float(self.offset), "duration": self.duration}


def wav_data_shortfall(path: str | Path) -> tuple[int, int] | None:
    """(declared, held) bytes of a RIFF/WAVE file's data chunk when its header declares more than the
    file holds, else None (also for other formats). libsndfile reads such a file without complaint,
    as the shorter clip it now is, so this is the one way to tell a cut-off WAV from a short one."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        position = 12
        while position + 8 <= size:
            handle.seek(position)
            chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
            if chunk_id == b"data":
                held = size - position - 8
                if chunk_size in _UNSET_CHUNK_SIZES or chunk_size <= held:
                    return None
                return chunk_size, held
            position += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to an even size
    return None


class _Header(NamedTuple):
    """What soundfile's header read tells: length in frames at the file's own rate."""

    frames: int
    samplerate: int

    @property
    def duration(self) -> float:
        return self.frames / self.samplerate


def _fail(ref: AudioRef, reason: str, message: str, source: str | None) -> AudioLoadError:
    return AudioLoadError(ref.path, message, source, reason)


def _open(ref: AudioRef, source: str | None) -> _Header:
    """The file's header, after the checks that need no decoding (missing, empty, unreadable, truncated)."""
    path = Path(ref.path)
    if not path.is_file():
        raise _fail(ref, MISSING_AUDIO, "no such file", source)
    if ref.offset < 0 or (ref.duration is not None and ref.duration <= 0):
        raise _fail(ref, UNREADABLE_AUDIO, f"offset must be >= 0 and duration > 0, got {ref}", source)
    if path.stat().st_size == 0:
        raise _fail(ref, EMPTY_AUDIO, "contains no samples (0 bytes)", source)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise _fail(ref, UNREADABLE_AUDIO, f"unreadable ({err})", source) from err
    if info.frames == 0:
        raise _fail(ref, EMPTY_AUDIO, "contains no samples", source)
    shortfall = wav_data_shortfall(path)
    if shortfall is not None:
        declared, held = shortfall
        message = f"truncated: the WAV header declares {declared} bytes of samples, the file holds {held}"
        raise _fail(ref, TRUNCATED_AUDIO, message, source)
    return _Header(int(info.frames), int(info.samplerate))


def _decode(ref: AudioRef, info: _Header, source: str | None) -> np.ndarray:
    """The requested slice at the file's own rate, all channels: (frames, channels) float32."""
    start = int(round(ref.offset * info.samplerate))
    frames = -1 if ref.duration is None else int(round(ref.duration * info.samplerate))
    if start >= info.frames:
        message = f"offset {ref.offset}s is past the end ({info.duration:.3f}s)"
        raise _fail(ref, DURATION_MISMATCH, message, source)
    try:
        data, _ = sf.read(ref.path, start=start, frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        # The header opened, the samples did not decode: cut off (or corrupt) after the header.
        raise _fail(
            ref, TRUNCATED_AUDIO, f"truncated or corrupt: samples do not decode ({err})", source
        ) from err
    expected = info.frames - start if frames < 0 else min(frames, info.frames - start)
    if data.shape[0] < expected:
        message = f"truncated: decoded {data.shape[0]} of the {expected} frames the header declares"
        raise _fail(ref, TRUNCATED_AUDIO, message, source)
    if data.shape[0] == 0:
        raise _fail(ref, EMPTY_AUDIO, "contains no samples", source)
    return data


def _check_duration(
    ref: AudioRef, decoded_s: float, info: _Header, tolerance_s: float | None, source: str | None
) -> None:
    """The slice must be as long as the manifest says. Only a shortfall can be seen: a file that grew
    still yields `duration` seconds, indistinguishable from a slice of a longer recording."""
    if ref.duration is None or tolerance_s is None or ref.duration - decoded_s <= tolerance_s:
        return
    message = (
        f"the manifest's duration is {ref.duration:.3f}s from offset {ref.offset}s, but the file holds "
        f"only {decoded_s:.3f}s there ({info.duration:.3f}s in all; tolerance {tolerance_s}s)"
    )
    raise _fail(ref, DURATION_MISMATCH, message, source)


def load_audio(
    ref: AudioRef,
    sample_rate: int = SAMPLE_RATE,
    source: str | None = None,
    duration_tolerance_s: float | None = DURATION_TOLERANCE_S,
) -> np.ndarray:
    """Decode `ref` to a float32 mono waveform at `sample_rate`. Shape: (num_samples,).

    `source` ("manifest.jsonl:12") is put in the error message of a file that cannot be used; its
    AudioLoadError.reason says why (see the module docstring). duration_tolerance_s=None skips the
    comparison with the manifest's duration.
    """
    info = _open(ref, source)
    data = _decode(ref, info, source)
    _check_duration(ref, data.shape[0] / info.samplerate, info, duration_tolerance_s, source)
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        message = f"{bad} of {data.size} samples are NaN or infinite"
        raise _fail(ref, NONFINITE_AUDIO, message, source)
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if info.samplerate != sample_rate:
        wave = soxr.resample(wave, info.samplerate, sample_rate, quality="HQ")
    return np.ascontiguousarray(wave, dtype=np.float32)


def write_audio(path: str | Path, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Write a mono 16-bit PCM WAV; returns its duration in seconds (from the written sample count)."""
    if wave.ndim != 1:
        raise ValueError(f"write_audio writes mono: expected a 1-D waveform, got shape {wave.shape}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    clipped = np.clip(wave, -1.0, 1.0)
    sf.write(str(path), clipped, sample_rate, subtype="PCM_16")
    return len(clipped) / sample_rate


def window_starts(num_samples: int, window: int, overlap: int = 0) -> list[int]:
    """Where each encoder window of a clip starts (samples). A clip of at most `window` samples is one
    window; a longer one is cut into windows of `window` samples, each starting `window - overlap`
    after the previous, the last one holding whatever is left (shorter, never empty).

    Example: 19 s in 6-s windows, no overlap: starts 0, 6, 12, 18 s (the last window 1 s long);
    with a 1-s overlap: 0, 5, 10, 15 s (the last 4 s long).
    """
    if window <= 0 or not 0 <= overlap < window:
        raise ValueError(
            f"windows of {window} samples with an overlap of {overlap}: need 0 <= overlap < window"
        )
    step = window - overlap
    extra = max(0, num_samples - window)  # samples past the first window
    return [k * step for k in range(1 + -(-extra // step))]


def split_windows(wave: np.ndarray, window: int, overlap: int = 0) -> list[np.ndarray]:
    """A waveform (samples,) cut into its encoder windows (window_starts): views, in order."""
    return [wave[start : start + window] for start in window_starts(len(wave), window, overlap)]
