"""The VocalSound recipe on a tiny copy of the release layout: audio_16k/<speaker>_<take>_<label>.wav and
the speaker split in meta/{tr,val,te}_meta.csv."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_recipes import vocalsound
from data_recipes.corpus import CorpusLayoutError
from lalm.config.data import CorpusRecipeConfig
from lalm.data.dataset import ManifestDataset

ROOT = Path(__file__).resolve().parents[3]
# file stem -> seconds; the split comes from the speaker's meta table.
CLIPS = {
    "f0003_0_cough": 0.5,
    "f0003_0_throatclearing": 0.25,
    "m0010_0_laughter": 0.75,
    "f0020_0_sigh": 0.375,
    "f0040_1_sniff": 0.625,
    "m0030_0_sneeze": 0.5,
}
SPEAKERS = {
    "train": ["f0003,Female,25,US,English,no", "m0010,Male,31,India,Hindi,no"],
    "dev": ["f0020,Female,44,UK,English,no"],
    "test": ["m0030,Male,60,China,Chinese,no", "f0040,Female,19,US,Spanish,no"],
}
TABLES = {"train": "tr_meta.csv", "dev": "val_meta.csv", "test": "te_meta.csv"}


def build_vocalsound(root: Path, rate: int = 16000, extra: dict[str, list[str]] | None = None) -> Path:
    audio = root / ("audio_16k" if rate == 16000 else "audio_44k")
    audio.mkdir(parents=True)
    for i, (stem, seconds) in enumerate(CLIPS.items()):
        wave = np.random.default_rng(i).uniform(-0.2, 0.2, int(seconds * rate)).astype(np.float32)
        sf.write(audio / f"{stem}.wav", wave, rate, subtype="PCM_16")
    (root / "meta").mkdir()
    for split, rows in SPEAKERS.items():
        lines = rows + (extra or {}).get(split, [])
        (root / "meta" / TABLES[split]).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "class_labels_indices_vs.csv").write_text("index,mid,display_name\n0,/m/vs_000,Laughter\n")
    return root


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _expected(root: Path, stems: list[str]) -> list[dict]:
    labels = {"cough": "cough", "throatclearing": "throat clearing", "laughter": "laughter"}
    labels |= {"sigh": "sigh", "sniff": "sniff", "sneeze": "sneeze"}
    records = []
    for stem in stems:
        audio = {"path": str(root / "audio_16k" / f"{stem}.wav"), "duration": CLIPS[stem]}
        gender = {"f": "female", "m": "male"}[stem[0]]
        for task, text in (("vocal_sound", labels[stem.split("_")[2]]), ("gender", gender)):
            records.append({"id": f"vocalsound-{stem}-{task}", "audio": audio, "task": task, "text": text})
            records[-1]["prompt_language"] = "en"
    return records


def test_cli_writes_the_official_speaker_split(tmp_path):
    # A header on the test table, a row that is no speaker in the dev table, and three bad clips.
    extra = {"dev": ["not a speaker,,,"]}
    source = build_vocalsound(tmp_path / "vocalsound_16k", extra=extra)
    meta = source / "meta" / "te_meta.csv"
    meta.write_text("spk_id,gender,age,country,native_language,health\n" + meta.read_text())
    for name in ("f0003_0_yawn.wav", "noise.wav", "f9999_0_cough.wav"):
        shutil.copy(source / "audio_16k" / "f0003_0_cough.wav", source / "audio_16k" / name)
    out = tmp_path / "out"
    command = [
        sys.executable, "scripts/prepare_data.py", "recipe=vocalsound", f"source_dir={source}",
        f"output_dir={out}", "recipe.num_workers=1", "recipe.sft_fraction=1.0",
    ]  # fmt: skip
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)

    assert _lines(out / "pretrain" / "train.jsonl") == _expected(
        source, ["f0003_0_cough", "f0003_0_throatclearing", "m0010_0_laughter"]
    )
    assert _lines(out / "pretrain" / "dev.jsonl") == _expected(source, ["f0020_0_sigh"])
    test = _expected(source, ["f0040_1_sniff", "m0030_0_sneeze"])
    assert _lines(out / "pretrain" / "test.jsonl") == test
    assert _lines(out / "eval" / "vocalsound_test.jsonl") == [r for r in test if r["task"] == "vocal_sound"]
    assert [len(_lines(out / "sft" / f"{s}.jsonl")) for s in ("train", "dev", "test")] == [6, 2, 4]
    summary = json.loads((out / "summary.json").read_text())
    expected_skips = {"bad_file_name": 1, "bad_meta_row": 1, "unknown_label": 1, "unknown_speaker": 1}
    assert summary["skipped"] == expected_skips
    assert summary["pretrain"]["train"]["tasks"] == {"vocal_sound": 3, "gender": 3}

    example = ManifestDataset.from_manifest(str(out / "pretrain" / "dev.jsonl"), "pretrain")[0]
    assert example["task"] == "vocal_sound"
    assert example["messages"][1] == {"role": "assistant", "content": [{"type": "text", "text": "sigh"}]}
    assert example["messages"][0]["content"][0]["waveform"].shape == (6000,)


def test_the_44k_release_is_read_and_decoded_at_16k(tmp_path):
    source = build_vocalsound(tmp_path / "vocalsound_44k", rate=44100)
    cfg = CorpusRecipeConfig(name="vocalsound", source_dir=str(source), num_workers=1, sft_fraction=0.0)
    summary = vocalsound.prepare(cfg, tmp_path / "out")
    assert summary["skipped"] == {} and summary["pretrain"]["test"]["examples"] == 4
    example = ManifestDataset.from_manifest(str(tmp_path / "out" / "pretrain" / "train.jsonl"), "pretrain")[4]
    assert example["id"] == "vocalsound-m0010_0_laughter-vocal_sound"
    assert example["messages"][0]["content"][0]["waveform"].shape == (12000,)  # 0.75 s resampled to 16 kHz


def test_broken_layouts_raise_naming_what_is_missing(tmp_path):
    source = build_vocalsound(tmp_path / "vs", extra={"test": ["f0003,Female,25,US,English,no"]})
    cfg = CorpusRecipeConfig(name="vocalsound", source_dir=str(source), num_workers=1)
    with pytest.raises(CorpusLayoutError, match=r"speaker f0003 is in both train and .*te_meta\.csv"):
        vocalsound.prepare(cfg, tmp_path / "out")
    (source / "meta" / "val_meta.csv").unlink()
    with pytest.raises(CorpusLayoutError, match=r"expected the dev speaker table at .*meta/val_meta\.csv"):
        vocalsound.prepare(cfg, tmp_path / "out")
    shutil.rmtree(source / "meta")
    with pytest.raises(CorpusLayoutError, match=r"expected the VocalSound meta/ folder at"):
        vocalsound.prepare(cfg, tmp_path / "out")
    other = build_vocalsound(tmp_path / "vs2")
    shutil.rmtree(other / "audio_16k")
    with pytest.raises(
        CorpusLayoutError, match=r"expected the VocalSound clips at .*audio_16k \(or audio_44k/\)"
    ):
        vocalsound.prepare(CorpusRecipeConfig(name="vocalsound", source_dir=str(other)), tmp_path / "out")
