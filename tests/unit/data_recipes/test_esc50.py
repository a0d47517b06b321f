"""The ESC-50 recipe on a tiny copy of the ESC-50-master layout: meta/esc50.csv with the corpus's seven
columns, audio/{fold}-{src_file}-{take}-{target}.wav at 44.1 kHz mono."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_recipes import esc50
from data_recipes.corpus import CorpusLayoutError
from lalm.config.data import CorpusRecipeConfig
from lalm.data.dataset import ManifestDataset

ROOT = Path(__file__).resolve().parents[3]
RATE = 44100
HEADER = "filename,fold,target,category,esc10,src_file,take"
# (filename, fold, target, category, seconds); seconds None: the row's WAV is not shipped.
ROWS = [
    ("1-100032-A-0.wav", "1", "0", "dog", 0.5),
    ("1-100038-A-14.wav", "1", "14", "chirping_birds", 0.25),
    ("3-102583-C-49.wav", "3", "49", "hand_saw", 0.25),
    ("4-181286-A-10.wav", "4", "10", "rain", 0.5),
    ("5-200334-A-1.wav", "5", "1", "rooster", 0.75),
    ("5-9032-A-0.wav", "5", "0", "dog", None),  # missing_audio
    ("2-118072-A-0.wav", "2", "7", "dog", 0.25),  # unknown_label: dog is target 0
    ("2-11111-A-50.wav", "2", "50", "lawn_mower", 0.25),  # unknown_label: not an ESC-50 class
    ("6-12345-A-0.wav", "6", "0", "dog", 0.25),  # bad_fold
]


def build_esc50(parent: Path) -> Path:
    root = parent / "ESC-50-master"
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    lines = [HEADER]
    for index, (name, fold, target, category, seconds) in enumerate(ROWS):
        esc10 = "True" if category in ("dog", "rooster", "rain") else "False"
        lines.append(f"{name},{fold},{target},{category},{esc10},{name.split('-')[1]},{name.split('-')[2]}")
        if seconds is not None:
            wave = np.random.default_rng(index).uniform(-0.3, 0.3, int(seconds * RATE)).astype(np.float32)
            sf.write(root / "audio" / name, wave, RATE, subtype="PCM_16")
    (root / "meta" / "esc50.csv").write_text("\n".join(lines) + "\n")
    return root


def _config(source: Path, **overrides: object) -> CorpusRecipeConfig:
    return CorpusRecipeConfig(name="esc50", source_dir=str(source), num_workers=1, **overrides)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _record(root: Path, name: str, text: str, seconds: float) -> dict:
    return {
        "id": name.removesuffix(".wav"),
        "audio": {"path": str(root / "audio" / name), "duration": seconds},
        "task": "sound",
        "text": text,
        "prompt_language": "en",
    }


def test_folds_give_the_splits_and_labels_read_as_words(tmp_path):
    root = build_esc50(tmp_path).resolve()
    summary = esc50.prepare(_config(root, sft_fraction=1.0), tmp_path / "out")
    out = tmp_path / "out"
    assert _lines(out / "pretrain" / "train.jsonl") == [
        _record(root, "1-100032-A-0.wav", "dog", 0.5),
        _record(root, "1-100038-A-14.wav", "chirping birds", 0.25),
        _record(root, "3-102583-C-49.wav", "hand saw", 0.25),
    ]
    assert _lines(out / "pretrain" / "dev.jsonl") == [_record(root, "4-181286-A-10.wav", "rain", 0.5)]
    assert _lines(out / "pretrain" / "test.jsonl") == [_record(root, "5-200334-A-1.wav", "rooster", 0.75)]
    assert summary["skipped"] == {"missing_audio": 1, "unknown_label": 2, "bad_fold": 1}
    assert summary["sft"] == {"train": 3, "dev": 1, "test": 1}
    assert "eval" not in summary and not (out / "eval").exists()
    sft = _lines(out / "sft" / "train.jsonl")
    assert [r["id"] for r in sft] == ["1-100032-A-0-sft", "1-100038-A-14-sft", "3-102583-C-49-sft"]
    assert sft[1]["messages"][1]["content"] == "chirping birds"


def test_the_cli_reads_the_parent_folder_too_and_the_audio_decodes(tmp_path):
    root = build_esc50(tmp_path).resolve()
    out = tmp_path / "out"
    command = [
        sys.executable,
        "scripts/prepare_data.py",
        "recipe=esc50",
        f"source_dir={tmp_path}",  # the folder above ESC-50-master/
        f"output_dir={out}",
        "recipe.sft_fraction=0",
    ]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    summary = json.loads((out / "summary.json").read_text())
    assert {split: s["examples"] for split, s in summary["pretrain"].items()} == {
        "train": 3,
        "dev": 1,
        "test": 1,
    }
    assert "sft" not in summary and not (out / "sft").exists()
    example = ManifestDataset.from_manifest(str(out / "pretrain" / "test.jsonl"), "pretrain")[0]
    audio = example["messages"][0]["content"][0]
    assert audio["file"] == str(root / "audio" / "5-200334-A-1.wav")
    assert audio["waveform"].shape == (12000,)  # 0.75 s at 16 kHz
    assert example["messages"][1]["content"][0]["text"] == "rooster"


def test_a_missing_metadata_file_or_audio_folder_names_the_path_expected(tmp_path):
    root = build_esc50(tmp_path)
    with pytest.raises(CorpusLayoutError, match="meta/esc50.csv"):
        esc50.prepare(_config(tmp_path / "elsewhere"), tmp_path / "out")
    for wav in (root / "audio").iterdir():
        wav.unlink()
    (root / "audio").rmdir()
    with pytest.raises(CorpusLayoutError, match=f"ESC-50's audio folder at {root / 'audio'}"):
        esc50.prepare(_config(root), tmp_path / "out")


def test_a_metadata_file_without_the_columns_is_refused(tmp_path):
    root = build_esc50(tmp_path)
    (root / "meta" / "esc50.csv").write_text("filename,label\n1-100032-A-0.wav,dog\n")
    with pytest.raises(CorpusLayoutError, match=r"lacks the columns \['fold', 'target', 'category'\]"):
        esc50.prepare(_config(root), tmp_path / "out")


def test_the_class_table_has_fifty_distinct_names():
    assert len(esc50.CATEGORIES) == len(set(esc50.CATEGORIES)) == 50
    assert esc50.CATEGORIES.index("chirping_birds") == 14 and esc50.CATEGORIES[49] == "hand_saw"
