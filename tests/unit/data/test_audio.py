"""Tests for audio decoding (mono, 16 kHz, slicing), its errors and their reasons, and WAV writing."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from lalm.data.audio import (
    AUDIO_REASONS,
    SAMPLE_RATE,
    AudioRef,
    load_audio,
    wav_data_shortfall,
    write_audio,
)
from lalm.errors import AudioLoadError, LalmInputError


def _sine(n: int, rate: int, freq: float = 440.0) -> np.ndarray:
    return np.sin(2 * np.pi * freq * np.arange(n) / rate)


def test_stereo_44k1_decodes_to_mono_16k(tmp_path: Path) -> None:
    rate, n = 44_100, 22_050  # 0.5 s
    left = 0.8 * _sine(n, rate)
    right = -0.4 * _sine(n, rate)
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.stack([left, right], axis=1), rate, subtype="FLOAT")

    wave = load_audio(AudioRef(str(path)))

    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - round(n * SAMPLE_RATE / rate)) <= 1
    expected = soxr.resample(((left + right) / 2).astype(np.float32), rate, SAMPLE_RATE, quality="HQ")
    np.testing.assert_allclose(wave, expected[: len(wave)], atol=1e-5)
    # Independent of soxr: the channel mean is 0.2 * sine, sampled at 16 kHz (edges excepted).
    analytic = 0.2 * _sine(len(wave), SAMPLE_RATE)
    np.testing.assert_allclose(wave[200:-200], analytic[200:-200], atol=5e-3)
    assert np.abs(wave).max() == pytest.approx(0.2, abs=5e-3)


def test_mono_16k_is_returned_unchanged(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(-32768, 32767, 1600).astype(np.int16)
    path = tmp_path / "mono.wav"
    sf.write(str(path), data, SAMPLE_RATE, subtype="PCM_16")
    wave = load_audio(AudioRef(str(path)))
    np.testing.assert_array_equal(wave, data.astype(np.float32) / 32768)


def test_other_target_rate(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    write_audio(path, 0.5 * _sine(16_000, SAMPLE_RATE))
    assert len(load_audio(AudioRef(str(path)), sample_rate=8_000)) == 8_000


@pytest.fixture
def ramp16k(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """One second at 16 kHz of exactly representable PCM_16 values, all distinct near the slices."""
    ints = (np.arange(SAMPLE_RATE) % 30_000 - 15_000).astype(np.int16)
    path = tmp_path / "ramp.wav"
    sf.write(str(path), ints, SAMPLE_RATE, subtype="PCM_16")
    return path, ints.astype(np.float32) / 32768


@pytest.mark.parametrize(
    ("offset", "duration", "start", "stop"),
    [
        (0.25, 0.5, 4_000, 12_000),
        (0.0, 0.1, 0, 1_600),
        (0.5, None, 8_000, 16_000),
        (0.9, 0.15, 14_400, 16_000),  # 0.05 s past the end: within the tolerance, cut at the end
        (0.0001, 0.0001, 2, 4),  # rounded to the nearest sample
    ],
)
def test_offset_and_duration_slice(ramp16k, offset, duration, start, stop) -> None:
    path, samples = ramp16k
    wave = load_audio(AudioRef(str(path), offset=offset, duration=duration))
    np.testing.assert_array_equal(wave, samples[start:stop])


def _missing(tmp_path: Path) -> tuple[Path, AudioRef]:
    path = tmp_path / "missing.wav"
    return path, AudioRef(str(path))


def _garbage(tmp_path: Path) -> tuple[Path, AudioRef]:
    path = tmp_path / "x.wav"
    path.write_text("this is a text file, not a WAV\n")
    return path, AudioRef(str(path))


def _zero_bytes(tmp_path: Path) -> tuple[Path, AudioRef]:
    path = tmp_path / "zero.wav"
    path.write_bytes(b"")
    return path, AudioRef(str(path))


def _header_only(tmp_path: Path) -> tuple[Path, AudioRef]:
    path = tmp_path / "header_only.wav"
    sf.write(str(path), np.zeros(0), SAMPLE_RATE, subtype="PCM_16")
    return path, AudioRef(str(path))


def _speechlike(seconds: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    return 0.3 * _sine(int(seconds * SAMPLE_RATE), SAMPLE_RATE) + 0.05 * rng.standard_normal(
        int(seconds * SAMPLE_RATE)
    )


def _chopped_wav(tmp_path: Path) -> tuple[Path, AudioRef]:
    """A real WAV (with a LIST chunk before its samples) with its last 40% of bytes cut off."""
    whole = tmp_path / "whole.wav"
    with sf.SoundFile(str(whole), "w", SAMPLE_RATE, 1, subtype="PCM_16") as handle:
        handle.title = "a title, so that a LIST chunk comes before the data chunk"
        handle.write(_speechlike())
    data = whole.read_bytes()
    path = tmp_path / "chopped.wav"
    path.write_bytes(data[: int(len(data) * 0.6)])
    return path, AudioRef(str(path))


def _chopped_flac(tmp_path: Path) -> tuple[Path, AudioRef]:
    whole = tmp_path / "whole.flac"
    sf.write(str(whole), _speechlike(3.0), SAMPLE_RATE, format="FLAC")
    data = whole.read_bytes()
    path = tmp_path / "chopped.flac"
    path.write_bytes(data[: int(len(data) * 0.7)])
    return path, AudioRef(str(path))


def _float_wav(tmp_path: Path, bad: float) -> tuple[Path, AudioRef]:
    wave = _speechlike()
    wave[8_000:8_010] = bad
    path = tmp_path / "float.wav"
    sf.write(str(path), wave, SAMPLE_RATE, subtype="FLOAT")
    return path, AudioRef(str(path))


def _nan(tmp_path: Path) -> tuple[Path, AudioRef]:
    return _float_wav(tmp_path, float("nan"))


def _inf(tmp_path: Path) -> tuple[Path, AudioRef]:
    return _float_wav(tmp_path, float("-inf"))


def _shorter_than_manifest(tmp_path: Path) -> tuple[Path, AudioRef]:
    """The manifest says 2.0 s; the file (re-recorded since) holds 1.5 s."""
    path = tmp_path / "shorter.wav"
    write_audio(path, _speechlike(1.5))
    return path, AudioRef(str(path), duration=2.0)


def _past_end(tmp_path: Path) -> tuple[Path, AudioRef]:
    path = tmp_path / "short.wav"
    write_audio(path, np.zeros(SAMPLE_RATE))
    return path, AudioRef(str(path), offset=1.0)


BAD_AUDIO = {
    "missing": (_missing, "missing_audio", "no such file"),
    "zero-bytes": (_zero_bytes, "empty_audio", "contains no samples (0 bytes)"),
    "header-only": (_header_only, "empty_audio", "contains no samples"),
    "text-file": (_garbage, "unreadable_audio", "unreadable (Error opening"),
    "chopped-wav": (_chopped_wav, "truncated_audio", "the WAV header declares 32000 bytes"),
    "chopped-flac": (_chopped_flac, "truncated_audio", "samples do not decode"),
    "nan": (_nan, "nonfinite_audio", "10 of 16000 samples are NaN or infinite"),
    "inf": (_inf, "nonfinite_audio", "10 of 16000 samples are NaN or infinite"),
    "shorter-than-manifest": (_shorter_than_manifest, "duration_mismatch", "holds only 1.500s"),
    "offset-past-end": (_past_end, "duration_mismatch", "offset 1.0s is past the end (1.000s)"),
}


@pytest.mark.parametrize(("make", "reason", "detail"), BAD_AUDIO.values(), ids=BAD_AUDIO.keys())
@pytest.mark.parametrize("source", [None, "m.jsonl:7"])
def test_bad_audio_raises_with_its_reason(tmp_path: Path, make, reason: str, detail: str, source) -> None:
    path, ref = make(tmp_path)
    with pytest.raises(AudioLoadError) as info:
        load_audio(ref, source=source)
    err = info.value
    message = str(err)
    assert isinstance(err, LalmInputError)
    assert err.reason == reason and reason in AUDIO_REASONS
    assert err.audio_path == str(path) and err.source == source
    assert detail in err.detail and message.endswith(err.detail)
    assert f"audio file {path}: " in message
    if source is None:
        assert message.startswith(f"audio file {path}")
    else:
        assert message.startswith("m.jsonl:7: ")


def test_every_audio_reason_is_reachable() -> None:
    assert {reason for _, reason, _ in BAD_AUDIO.values()} == set(AUDIO_REASONS)


def test_a_chopped_wav_is_what_soundfile_reads_without_complaint(tmp_path: Path) -> None:
    """Why the header is checked: libsndfile reads the cut-off file as a shorter, valid clip."""
    path, _ = _chopped_wav(tmp_path)
    data, _ = sf.read(str(path))
    assert 0 < len(data) < SAMPLE_RATE
    declared, held = wav_data_shortfall(path)
    assert declared == 2 * SAMPLE_RATE and held // 2 == len(data)  # PCM_16: 2 bytes a sample


def test_whole_and_streamed_wavs_are_not_truncated(tmp_path: Path) -> None:
    whole = tmp_path / "whole.wav"
    write_audio(whole, _speechlike())
    assert wav_data_shortfall(whole) is None
    # A writer that cannot seek back (a pipe) leaves the data size unset: 0xFFFFFFFF. Not truncation.
    data = bytearray(whole.read_bytes())
    at = data.index(b"data")
    data[at + 4 : at + 8] = struct.pack("<I", 0xFFFFFFFF)
    streamed = tmp_path / "streamed.wav"
    streamed.write_bytes(bytes(data))
    assert wav_data_shortfall(streamed) is None
    assert len(load_audio(AudioRef(str(streamed)))) == SAMPLE_RATE
    flac = tmp_path / "a.flac"
    sf.write(str(flac), _speechlike(), SAMPLE_RATE, format="FLAC")
    assert wav_data_shortfall(flac) is None


def test_duration_tolerance(tmp_path: Path) -> None:
    path, ref = _shorter_than_manifest(tmp_path)  # 0.5 s short
    assert len(load_audio(ref, duration_tolerance_s=0.6)) == int(1.5 * SAMPLE_RATE)
    assert len(load_audio(ref, duration_tolerance_s=None)) == int(1.5 * SAMPLE_RATE)
    with pytest.raises(AudioLoadError, match="tolerance 0.4s"):
        load_audio(ref, duration_tolerance_s=0.4)
    # At another rate the comparison is in seconds of the file, before resampling.
    at_8k = tmp_path / "8k.wav"
    write_audio(at_8k, _speechlike(1.5)[::2], sample_rate=8_000)
    with pytest.raises(AudioLoadError) as info:
        load_audio(AudioRef(str(at_8k), duration=2.0))
    assert info.value.reason == "duration_mismatch"
    assert len(load_audio(AudioRef(str(at_8k), duration=1.55))) == int(1.5 * SAMPLE_RATE)


def test_zero_length_slice_is_an_error(ramp16k) -> None:
    path, _ = ramp16k
    with pytest.raises(AudioLoadError, match="contains no samples"):
        load_audio(AudioRef(str(path), duration=0.00001))


def test_write_audio_returns_duration_and_writes_pcm16_mono(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "out.wav"
    duration = write_audio(path, 0.5 * _sine(12_345, SAMPLE_RATE))
    assert duration == 12_345 / SAMPLE_RATE
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.frames) == (SAMPLE_RATE, 1, 12_345)
    assert info.subtype == "PCM_16" and info.format == "WAV"


def test_write_audio_other_rate_and_clipping(tmp_path: Path) -> None:
    path = tmp_path / "loud.wav"
    duration = write_audio(path, np.array([2.0, -3.0, 0.5, 0.0]), sample_rate=8_000)
    assert duration == 4 / 8_000
    data, rate = sf.read(str(path), dtype="int16")
    assert rate == 8_000
    assert data.tolist() == [32767, -32768, 16384, 0]


def test_audio_ref_to_dict() -> None:
    assert AudioRef("a.wav", 1, 2.5).to_dict() == {"path": "a.wav", "offset": 1.0, "duration": 2.5}
    assert AudioRef("a.wav").to_dict() == {"path": "a.wav", "offset": 0.0, "duration": None}


def test_negative_offset_is_an_error(ramp16k) -> None:
    path, _ = ramp16k
    with pytest.raises(AudioLoadError):
        load_audio(AudioRef(str(path), offset=-0.05))
