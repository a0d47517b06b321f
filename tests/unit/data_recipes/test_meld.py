"""The MELD recipe on a tiny copy of MELD.Raw: the three *_sent_emo.csv tables with their official
header, MP4 clip folders, and audio from pre-extracted WAVs or, where ffmpeg is installed, from the MP4s."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_recipes import meld
from data_recipes.corpus import CorpusLayoutError
from lalm.config.data import CorpusRecipeConfig
from lalm.data.dataset import ManifestDataset

ROOT = Path(__file__).resolve().parents[3]
HEADER = (
    "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime"
)
# split -> (dialogue, utterance, emotion, seconds)
ROWS = {
    "train": [(0, 0, "sadness", 0.5), (0, 1, "joy", 0.25), (1, 0, "neutral", 0.375)],
    "dev": [(0, 0, "anger", 0.5)],
    "test": [(0, 0, "surprise", 0.25), (3, 2, "disgust", 0.625)],
}
FOLDERS = {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")


def _csv_line(number: int, dialogue: object, utterance: object, emotion: str) -> str:
    # As MELD writes them: the utterance quoted when it has a comma, times quoted ("00:20:57,256").
    utterance_text = '"Oh my God, he\u2019s lost it."'
    times = '"00:20:57,256","00:21:00,049"'
    return f"{number},{utterance_text},Phoebe,{emotion},negative,{dialogue},{utterance},4,7,{times}"


def build_meld(root: Path, extra: dict[str, list[str]] | None = None) -> Path:
    """MELD.Raw/ with the three CSVs and empty clip folders (MP4s are added by the tests that need them)."""
    root.mkdir(parents=True)
    for split, rows in ROWS.items():
        lines = [HEADER] + [_csv_line(i + 1, d, u, e) for i, (d, u, e, _) in enumerate(rows)]
        lines += (extra or {}).get(split, [])
        (root / f"{split}_sent_emo.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (root / FOLDERS[split]).mkdir()
    return root


def _wave(seconds: float, rate: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.2, 0.2, int(seconds * rate)).astype(np.float32)


def write_wavs(audio_dir: Path, folder_names: dict[str, str], rate: int = 16000) -> None:
    for split, rows in ROWS.items():
        (audio_dir / folder_names[split]).mkdir(parents=True)
        for i, (d, u, _, seconds) in enumerate(rows):
            sf.write(audio_dir / folder_names[split] / f"dia{d}_utt{u}.wav", _wave(seconds, rate, i), rate)


def write_mp4(path: Path, seconds: float, seed: int) -> None:
    """A clip like MELD's: a video stream and an AAC audio stream (48 kHz stereo)."""
    wav = path.with_suffix(".src.wav")
    sf.write(wav, np.stack([_wave(seconds, 48000, seed)] * 2, axis=1), 48000)
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "color=c=black:s=16x16:r=5"]
    command += ["-i", str(wav), "-shortest", "-c:v", "mpeg4", "-c:a", "aac", str(path)]
    subprocess.run(command, check=True, capture_output=True)
    wav.unlink()


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _expected(split: str, audio_folder: Path) -> list[dict]:
    return [
        {
            "id": f"meld-{split}-dia{d}_utt{u}",
            "audio": {"path": str(audio_folder / f"dia{d}_utt{u}.wav"), "duration": seconds},
            "task": "emotion",
            "text": emotion,
            "language": "en",
            "prompt_language": "en",
        }
        for d, u, emotion, seconds in ROWS[split]
    ]


def test_cli_reads_pre_extracted_wavs_without_ffmpeg(tmp_path):
    bad = {
        "train": [
            _csv_line(4, 1, 1, "boredom"),  # unknown_label
            _csv_line(5, "x", 0, "joy"),  # malformed_row
            _csv_line(6, 125, 3, "joy"),  # missing_audio: neither WAV nor MP4
            _csv_line(7, 2, 0, "fear"),  # mp4_without_ffmpeg
        ]
    }
    source = build_meld(tmp_path / "MELD.Raw", bad)
    (source / "train_splits" / "dia2_utt0.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    audio_dir = tmp_path / "meld_wav"
    write_wavs(audio_dir, FOLDERS)
    out, empty = tmp_path / "out", tmp_path / "no-ffmpeg"
    empty.mkdir()
    command = [
        sys.executable, "scripts/prepare_data.py", "recipe=meld", f"source_dir={tmp_path}",
        f"output_dir={out}", f"recipe.audio_dir={audio_dir}", "recipe.sft_fraction=1.0",
    ]  # fmt: skip
    # source_dir is the folder above MELD.Raw/; PATH without ffmpeg, as on a machine that lacks it.
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, env={**os.environ, "PATH": str(empty)})

    for split in ("train", "dev", "test"):
        expected = _expected(split, audio_dir / FOLDERS[split])
        assert _lines(out / "pretrain" / f"{split}.jsonl") == expected
        assert len(_lines(out / "sft" / f"{split}.jsonl")) == len(expected)
    assert _lines(out / "eval" / "meld_test.jsonl") == _expected("test", audio_dir / FOLDERS["test"])
    summary = json.loads((out / "summary.json").read_text())
    expected_skips = {"malformed_row": 1, "missing_audio": 1, "mp4_without_ffmpeg": 1, "unknown_label": 1}
    assert summary["skipped"] == expected_skips
    assert not (out / "audio").exists()

    example = ManifestDataset.from_manifest(str(out / "eval" / "meld_test.jsonl"), "pretrain")[1]
    assert example["id"] == "meld-test-dia3_utt2" and example["task"] == "emotion"
    assert example["messages"][0]["content"][0]["waveform"].shape == (10000,)
    assert example["messages"][1]["content"][0]["text"] == "disgust"


def test_wav_folders_named_after_the_splits_and_no_clip_folders_needed(tmp_path):
    source = build_meld(tmp_path / "MELD.Raw")
    for folder in FOLDERS.values():
        (source / folder).rmdir()
    audio_dir = tmp_path / "wav"
    write_wavs(audio_dir, {split: split for split in FOLDERS}, rate=22050)
    cfg = CorpusRecipeConfig(name="meld", source_dir=str(source), audio_dir=str(audio_dir), sft_fraction=0.0)
    summary = meld.prepare(cfg, tmp_path / "out")
    assert summary["skipped"] == {} and summary["eval"]["meld_test"]["examples"] == 2
    records = _lines(tmp_path / "out" / "pretrain" / "dev.jsonl")
    assert records == _expected("dev", audio_dir / "dev")
    example = ManifestDataset.from_manifest(str(tmp_path / "out" / "pretrain" / "dev.jsonl"), "pretrain")[0]
    assert example["messages"][0]["content"][0]["waveform"].shape == (8000,)  # 22.05 kHz read at 16 kHz


def test_missing_pieces_raise_a_clear_error(tmp_path, monkeypatch):
    source = build_meld(tmp_path / "MELD.Raw")
    empty = tmp_path / "no-ffmpeg"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    cfg = CorpusRecipeConfig(name="meld", source_dir=str(source))
    with pytest.raises(CorpusLayoutError, match=r"MP4 video.*recipe\.audio_dir=DIR.*or put ffmpeg on PATH"):
        meld.prepare(cfg, tmp_path / "out")
    (source / "dev_splits_complete").rmdir()
    with pytest.raises(
        CorpusLayoutError, match=r"dev clips at .*dev_splits_complete .*extract .*dev\.tar\.gz"
    ):
        meld.prepare(cfg, tmp_path / "out")
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    with_audio = CorpusRecipeConfig(name="meld", source_dir=str(source), audio_dir=str(wrong))
    with pytest.raises(CorpusLayoutError, match=r"audio_dir .*wrong has none of the split folders"):
        meld.prepare(with_audio, tmp_path / "out")
    (source / "test_sent_emo.csv").unlink()
    with pytest.raises(
        CorpusLayoutError, match=r"expected MELD's test labels at .*MELD\.Raw/test_sent_emo\.csv"
    ):
        meld.prepare(with_audio, tmp_path / "out")


@needs_ffmpeg
def test_ffmpeg_extracts_16k_mono_wavs_from_the_mp4_clips(tmp_path):
    # Clip folders under folders named after the splits (MELD.Raw/train/train_splits/), as some copies have.
    source = build_meld(tmp_path / "MELD.Raw", {"dev": [_csv_line(2, 5, 5, "fear")]})
    for split, rows in ROWS.items():
        nested = source / split / FOLDERS[split]
        nested.mkdir(parents=True)
        (source / FOLDERS[split]).rmdir()
        for i, (d, u, _, seconds) in enumerate(rows):
            write_mp4(nested / f"dia{d}_utt{u}.mp4", seconds, i)
    (source / "dev" / FOLDERS["dev"] / "dia5_utt5.mp4").write_bytes(b"not a video")  # ffmpeg_failed
    cfg = CorpusRecipeConfig(name="meld", source_dir=str(source), num_workers=2, sft_fraction=0.0)
    out = tmp_path / "out"
    summary = meld.prepare(cfg, out)
    assert summary["skipped"] == {"ffmpeg_failed": 1}
    for split, rows in ROWS.items():
        records = _lines(out / "pretrain" / f"{split}.jsonl")
        assert [r["id"] for r in records] == [f"meld-{split}-dia{d}_utt{u}" for d, u, _, _ in rows]
        for record, (d, u, emotion, seconds) in zip(records, rows, strict=True):
            wav = out / "audio" / FOLDERS[split] / f"dia{d}_utt{u}.wav"
            info = sf.info(wav)
            assert record["audio"] == {"path": str(wav), "duration": round(info.duration, 3)}
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert (
                abs(info.duration - seconds) < 0.05 and record["text"] == emotion
            )  # AAC adds a frame at most
    assert sorted(p.name for p in (out / "audio" / FOLDERS["dev"]).iterdir()) == ["dia0_utt0.wav"]
    example = ManifestDataset.from_manifest(str(out / "pretrain" / "train.jsonl"), "pretrain")[0]
    assert (
        float(np.abs(example["messages"][0]["content"][0]["waveform"]).max()) > 0.05
    )  # real audio, not silence

    mtime = (out / "audio" / FOLDERS["train"] / "dia0_utt0.wav").stat().st_mtime_ns
    assert meld.prepare(cfg, out)["pretrain"] == summary["pretrain"]  # a re-run reuses the WAVs
    assert (out / "audio" / FOLDERS["train"] / "dia0_utt0.wav").stat().st_mtime_ns == mtime
