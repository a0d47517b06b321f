"""Sound makers for the synthetic corpus: espeak-ng for speech, sox for everything else.

Each function returns a float32 mono waveform at 16 kHz. Both tools are deterministic (sox with -R),
so the corpus is a pure function of its plan.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
from pypinyin import Style, lazy_pinyin

from lalm.data.audio import SAMPLE_RATE, AudioRef, load_audio

# espeak-ng voice per language code. Mandarin Hanzi is misread by espeak's cmn voice, so Mandarin text
# is converted to numbered-tone pinyin and read by cmn-latn-pinyin (docs/design-notes.md).
ESPEAK_VOICES = {
    "en": "en-us",
    "zh": "cmn-latn-pinyin",
    "yue": "yue",
    "fr": "fr-fr",
    "it": "it",
    "es": "es",
    "de": "de",
    "ja": "ja",
}


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")


def _read(path: Path) -> np.ndarray:
    # Down-mixes (chords are rendered on 3 channels) and resamples (espeak writes 22.05 kHz).
    return load_audio(AudioRef(str(path)), SAMPLE_RATE)


def speakable_text(text: str, language: str) -> str:
    if language == "zh":
        return " ".join(lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True))
    return text


def speak(text: str, language: str, variant: str, speed: int, pitch: int) -> np.ndarray:
    """Speech for `text` from espeak-ng; variant is an espeak voice variant such as m3, f2 or whisper."""
    voice = f"{ESPEAK_VOICES[language]}+{variant}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        _run(
            [
                "espeak-ng",
                "-v",
                voice,
                "-s",
                str(speed),
                "-p",
                str(pitch),
                "-w",
                str(path),
                speakable_text(text, language),
            ]
        )
        return _read(path)


def sox_synth(seconds: float, *synth_args: str, channels: int = 1) -> np.ndarray:
    """`sox -n ... synth <seconds> <synth_args>` rendered to a waveform."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sound.wav"
        _run(
            [
                "sox",
                "-R",
                "-n",
                "-r",
                str(SAMPLE_RATE),
                "-c",
                str(channels),
                str(path),
                "synth",
                f"{seconds:.3f}",
                *synth_args,
            ]
        )
        return _read(path)


def tone(seconds: float, frequency: float) -> np.ndarray:
    return sox_synth(seconds, "sine", f"{frequency:.1f}")


def chirp(seconds: float, start: float, end: float) -> np.ndarray:
    return sox_synth(seconds, "sine", f"{start:.0f}-{end:.0f}")


def siren(cycles: int, low: float, high: float, sweep_seconds: float = 0.5) -> np.ndarray:
    up = chirp(sweep_seconds, low, high)
    return np.concatenate([np.concatenate([up, up[::-1]]) for _ in range(cycles)])


def noise(seconds: float, colour: str) -> np.ndarray:
    return sox_synth(seconds, f"{colour}noise")


def beeps(count: int, frequency: float, beep_seconds: float = 0.15, gap_seconds: float = 0.2) -> np.ndarray:
    one = np.concatenate(
        [tone(beep_seconds, frequency), np.zeros(int(gap_seconds * SAMPLE_RATE), np.float32)]
    )
    return np.concatenate([one] * count)


def chord(seconds: float, frequencies: tuple[float, ...]) -> np.ndarray:
    args = [part for f in frequencies for part in ("sine", f"{f:.2f}")]
    return sox_synth(seconds, *args, channels=len(frequencies))


def normalise(wave: np.ndarray, peak: float = 0.8) -> np.ndarray:
    top = float(np.max(np.abs(wave))) if wave.size else 0.0
    return (wave * (peak / top)).astype(np.float32) if top > 0 else wave.astype(np.float32)


def mix_at_snr(speech: np.ndarray, background: np.ndarray, snr_db: float) -> np.ndarray:
    """Speech over a background at `snr_db` (power ratio), background looped/cut to the speech length."""
    reps = int(np.ceil(len(speech) / max(len(background), 1)))
    background = np.tile(background, reps)[: len(speech)]
    speech_power = float(np.mean(speech**2)) + 1e-12
    noise_power = float(np.mean(background**2)) + 1e-12
    scale = np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))
    return normalise(speech + scale * background)
