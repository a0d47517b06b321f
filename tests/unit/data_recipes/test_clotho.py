"""The Clotho recipe on a tiny copy of Clotho v2.1's layout: three caption CSVs (file_name,
caption_1..caption_5, quoted cells with commas) beside the extracted development/, validation/ and
evaluation/ folders of 44.1 kHz mono WAVs named after Freesound titles."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sacrebleu
import soundfile as sf

from data_recipes import clotho
from data_recipes.corpus import CorpusLayoutError
from lalm.config.data import CorpusRecipeConfig
from lalm.data.dataset import ManifestDataset
from lalm.data.manifest import read_manifest_records
from lalm.eval.scoring import score_generations

ROOT = Path(__file__).resolve().parents[3]
RATE = 44100
HEADER = ["file_name", *(f"caption_{k}" for k in range(1, 6))]
# Clotho split -> (file name, five captions, seconds; None: listed in the CSV, no WAV shipped).
CLIPS = {
    "development": [
        ("Santa Motor.wav", [f"A motor hums, then stops {k}." for k in range(1, 6)], 0.5),
        (
            "Water flowing, bubbles (2).wav",
            ["Water flows.", "Bubbles rise.", "", "A stream.", "Water."],
            0.25,
        ),
        ("never shipped.wav", ["a", "b", "c", "d", "e"], None),
    ],
    "validation": [("Door creak.wav", [f'A door "creaks" {k}.' for k in range(1, 6)], 0.75)],
    "evaluation": [
        ("Birds at dawn.wav", [f"Birds sing {k}." for k in range(1, 6)], 0.5),
        ("Rain on roof.wav", ["", "Rain falls on a roof.", "Rain.", "Drops.", "A storm."], 0.25),
    ],
}


def build_clotho(root: Path) -> Path:
    for index, (split, clips) in enumerate(CLIPS.items()):
        (root / split).mkdir(parents=True)
        with (root / f"clotho_captions_{split}.csv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(HEADER)
            for number, (name, captions, seconds) in enumerate(clips):
                writer.writerow([name, *captions])
                if seconds is not None:
                    wave = np.random.default_rng(index * 10 + number).uniform(-0.3, 0.3, int(seconds * RATE))
                    sf.write(root / split / name, wave.astype(np.float32), RATE, subtype="PCM_16")
    return root


def _config(source: Path, **overrides: object) -> CorpusRecipeConfig:
    return CorpusRecipeConfig(name="clotho", source_dir=str(source), num_workers=1, **overrides)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _record(source: Path, split: str, name: str, number: int, text: str, seconds: float) -> dict:
    return {
        "id": f"{Path(name).stem}-c{number}",
        "audio": {"path": str(source / split / name), "duration": seconds},
        "task": "caption",
        "text": text,
        "prompt_language": "en",
    }


def test_one_record_per_caption_official_splits_and_an_eval_set_with_every_caption(tmp_path):
    source = build_clotho(tmp_path / "clotho").resolve()
    summary = clotho.prepare(_config(source, sft_fraction=1.0), tmp_path / "out")
    out = tmp_path / "out"
    motor = [
        _record(source, "development", "Santa Motor.wav", k, f"A motor hums, then stops {k}.", 0.5)
        for k in range(1, 6)
    ]
    water = [
        _record(source, "development", "Water flowing, bubbles (2).wav", k, text, 0.25)
        for k, text in ((1, "Water flows."), (2, "Bubbles rise."), (4, "A stream."), (5, "Water."))
    ]
    assert _lines(out / "pretrain" / "train.jsonl") == motor + water
    door = [
        _record(source, "validation", "Door creak.wav", k, f'A door "creaks" {k}.', 0.75) for k in range(1, 6)
    ]
    assert _lines(out / "pretrain" / "dev.jsonl") == door
    test_ids = [r["id"] for r in _lines(out / "pretrain" / "test.jsonl")]
    assert test_ids == [f"Birds at dawn-c{k}" for k in range(1, 6)] + [
        f"Rain on roof-c{k}" for k in range(2, 6)
    ]
    # The eval set: one record per clip, every non-empty caption a reference, the first one its text.
    assert _lines(out / "eval" / "clotho_eval.jsonl") == [
        {
            **_record(source, "evaluation", "Birds at dawn.wav", 1, "Birds sing 1.", 0.5),
            "references": [f"Birds sing {k}." for k in range(1, 6)],
        },
        {
            **_record(source, "evaluation", "Rain on roof.wav", 2, "Rain falls on a roof.", 0.25),
            "references": ["Rain falls on a roof.", "Rain.", "Drops.", "A storm."],
        },
    ]
    assert summary["skipped"] == {"missing_audio": 1, "empty_caption": 2}
    assert summary["sft"] == {"train": 9, "dev": 5, "test": 9}
    assert summary["pretrain"]["train"]["tasks"] == {"caption": 9}
    assert summary["eval"]["clotho_eval"]["examples"] == 2
    assert json.loads((out / "summary.json").read_text()) == summary
    sft = read_manifest_records(out / "sft" / "dev.jsonl", "sft")
    assert [r["id"] for r in sft] == [f"Door creak-c{k}-sft" for k in range(1, 6)]
    assert sft[0]["messages"][1]["content"][0]["text"] == 'A door "creaks" 1.'


def test_the_cli_writes_manifests_that_decode(tmp_path):
    source = build_clotho(tmp_path / "clotho").resolve()
    out = tmp_path / "out"
    command = [
        sys.executable,
        "scripts/prepare_data.py",
        "recipe=clotho",
        f"source_dir={source}",
        f"output_dir={out}",
    ]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    summary = json.loads((out / "summary.json").read_text())
    assert {split: s["examples"] for split, s in summary["pretrain"].items()} == {
        "train": 9,
        "dev": 5,
        "test": 9,
    }
    dataset = ManifestDataset.from_manifest(str(out / "eval" / "clotho_eval.jsonl"), "pretrain")
    example = dataset[1]
    audio = example["messages"][0]["content"][0]
    assert audio["file"] == str(source / "evaluation" / "Rain on roof.wav")
    assert example["task"] == "caption" and audio["waveform"].shape == (4000,)  # 0.25 s at 16 kHz
    assert np.abs(audio["waveform"]).max() > 0.1
    assert example["messages"][1]["content"][0]["text"] == "Rain falls on a roof."  # trained on: the first


def test_the_eval_set_is_scored_against_every_caption_of_a_clip(tmp_path):
    """What evaluation does with clotho_eval.jsonl: each clip's prediction against its references (the
    items evaluation builds from the validated records), the BLEU sacrebleu gives on those streams."""
    source = build_clotho(tmp_path / "clotho").resolve()
    clotho.prepare(_config(source), tmp_path / "out")
    records = read_manifest_records(tmp_path / "out" / "eval" / "clotho_eval.jsonl", "pretrain")
    predictions = ["Birds sing 4.", "A storm."]  # each is a caption other than the record's text
    items = [
        {
            "task": "caption",
            "language": r["language"],
            "target_language": r["prompt_language"],
            "reference": r["text"],
            "references": r["references"],
            "prediction": p,
        }
        for r, p in zip(records, predictions, strict=True)
    ]
    streams = [
        [f"Birds sing {k}." for k in range(1, 6)],
        ["Rain falls on a roof.", "Rain.", "Drops.", "A storm.", None],
    ]
    expected = sacrebleu.corpus_bleu(predictions, [list(s) for s in zip(*streams, strict=True)]).score
    assert score_generations(items) == {"caption/en/bleu": pytest.approx(expected), "caption/en/n": 2}
    assert expected == pytest.approx(100.0)  # both predictions are captions of their clip
    single = score_generations([{k: v for k, v in i.items() if k != "references"} for i in items])
    assert single["caption/en/bleu"] < 50.0


def test_latin1_captions_are_read(tmp_path):
    source = build_clotho(tmp_path / "clotho")
    text = "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\nDoor creak.wav,Un café,b,c,d,e\n"
    (source / "clotho_captions_validation.csv").write_bytes(text.encode("latin-1"))
    clotho.prepare(_config(source), tmp_path / "out")
    assert _lines(tmp_path / "out" / "pretrain" / "dev.jsonl")[0]["text"] == "Un café"


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        ("clotho_captions_validation.csv", "clotho_captions_validation.csv"),
        ("evaluation", "clotho_audio_evaluation.7z extracted"),
    ],
)
def test_a_missing_file_or_folder_names_the_path_expected(tmp_path, remove, message):
    source = build_clotho(tmp_path / "clotho")
    target = source / remove
    if target.is_dir():
        for wav in target.iterdir():
            wav.unlink()
        target.rmdir()
    else:
        target.unlink()
    with pytest.raises(CorpusLayoutError, match=message.replace(".", r"\.")):
        clotho.prepare(_config(source), tmp_path / "out")


def test_a_caption_file_without_the_caption_columns_is_refused(tmp_path):
    source = build_clotho(tmp_path / "clotho")
    (source / "clotho_captions_development.csv").write_text("file_name,caption\nSanta Motor.wav,a motor\n")
    with pytest.raises(CorpusLayoutError, match=r"lacks the columns \['caption_1'"):
        clotho.prepare(_config(source), tmp_path / "out")
