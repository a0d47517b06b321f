"""Tests for audio decoding (mono, 16 kHz, slicing), its errors, and WAV writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from lalm.data.audio import SAMPLE_RATE, AudioRef, load_audio, write_audio
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
        (0.9, 0.5, 14_400, 16_000),  # duration past the end is cut at the end
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
    path.write_bytes(b"not audio")
    return path, AudioRef(str(path))


def _past_end(tmp_path: Path) -> tuple[Path, AudioRef]:
    path = tmp_path / "short.wav"
    write_audio(path, np.zeros(SAMPLE_RATE))
    return path, AudioRef(str(path), offset=1.0)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_missing, "no such file"),
        (_garbage, "unreadable"),
        (_past_end, "offset 1.0s is past the end (1.000s)"),
    ],
    ids=["missing", "garbage", "offset-past-end"],
)
@pytest.mark.parametrize("source", [None, "m.jsonl:7"])
def test_bad_audio_raises_audio_load_error(tmp_path: Path, make, reason: str, source: str | None) -> None:
    path, ref = make(tmp_path)
    with pytest.raises(AudioLoadError) as info:
        load_audio(ref, source=source)
    err = info.value
    message = str(err)
    assert isinstance(err, LalmInputError)
    assert err.audio_path == str(path) and err.source == source
    assert f"audio file {path}: " in message
    assert reason in message
    if source is None:
        assert message.startswith(f"audio file {path}")
    else:
        assert message.startswith("m.jsonl:7: ")


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
