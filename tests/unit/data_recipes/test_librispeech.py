"""The LibriSpeech recipe on a tiny corpus in the OpenSLR layout (FLAC, <subset>/<spk>/<chapter>/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_recipes import librispeech
from data_recipes.corpus import CorpusLayoutError, unit_hash
from tests.unit.data_recipes.fixtures_speech import by_id, config, decode, read_jsonl, run_cli, write_tone

# subset -> speaker -> chapter -> [(utterance number, seconds, transcript)]
CORPUS = {
    "train-clean-100": {
        "19": {"198": [(0, 0.5, "NORTHANGER ABBEY"), (1, 0.75, "CHAPTER ONE")]},
        "26": {"495": [(0, 1.0, "THE  WIND   BLEW")]},
    },
    "train-clean-360": {"100": {"121669": [(0, 0.25, "TOM THE PIPER'S SON")]}},
    "dev-clean": {"84": {"121123": [(0, 0.5, "GO DO YOU HEAR")]}},
    "test-clean": {"1089": {"134686": [(0, 1.25, "HE HOPED THERE WOULD BE STEW"), (1, 0.5, "STUFF IT")]}},
    "test-other": {"1688": {"142285": [(0, 0.75, "THERE'S IRON THEY SAY")]}},
}


def build_librispeech(root: Path) -> Path:
    """LibriSpeech/ with the CORPUS above, one transcript line without its flac (19-198-0002) and one
    flac without a transcript line (26-495-0009)."""
    corpus = root / "LibriSpeech"
    corpus.mkdir(parents=True)
    for name in ("SPEAKERS.TXT", "CHAPTERS.TXT", "BOOKS.TXT", "README.TXT", "LICENSE.TXT"):
        (corpus / name).write_text("; not read by the recipe\n")
    for subset, speakers in CORPUS.items():
        for speaker, chapters in speakers.items():
            for chapter, utterances in chapters.items():
                folder = corpus / subset / speaker / chapter
                lines = []
                for number, seconds, text in utterances:
                    utterance = f"{speaker}-{chapter}-{number:04d}"
                    write_tone(folder / f"{utterance}.flac", seconds)
                    lines.append(f"{utterance} {text}")
                if (speaker, chapter) == ("19", "198"):
                    lines.append("19-198-0002 A LINE WHOSE AUDIO IS MISSING")
                if (speaker, chapter) == ("26", "495"):
                    write_tone(folder / "26-495-0009.flac", 0.5)
                (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return corpus


def test_cli_writes_official_splits_eval_sets_and_counts_skips(tmp_path):
    source = build_librispeech(tmp_path / "src")
    out = tmp_path / "out"
    summary = run_cli("librispeech", source, out, "recipe.sft_fraction=0.5")

    train = by_id(out / "pretrain" / "train.jsonl")
    assert list(train) == ["19-198-0000", "19-198-0001", "26-495-0000", "100-121669-0000"]  # subset order
    assert train["19-198-0000"] == {
        "id": "19-198-0000",
        "audio": {"path": str(source / "train-clean-100/19/198/19-198-0000.flac"), "duration": 0.5},
        "task": "asr",
        "language": "en",
        "text": "northanger abbey",
    }
    assert train["26-495-0000"]["text"] == "the wind blew"
    assert train["100-121669-0000"]["audio"]["duration"] == 0.25
    assert list(by_id(out / "pretrain" / "dev.jsonl")) == ["84-121123-0000"]
    test = by_id(out / "pretrain" / "test.jsonl")
    assert list(test) == ["1089-134686-0000", "1089-134686-0001", "1688-142285-0000"]
    assert test["1089-134686-0000"]["audio"]["duration"] == 1.25

    assert sorted(p.name for p in (out / "eval").iterdir()) == [
        "librispeech_dev_clean.jsonl",
        "librispeech_test_clean.jsonl",
        "librispeech_test_other.jsonl",
    ]
    assert list(by_id(out / "eval" / "librispeech_test_other.jsonl")) == ["1688-142285-0000"]
    assert by_id(out / "eval" / "librispeech_test_clean.jsonl") == {k: test[k] for k in list(test)[:2]}

    assert summary["skipped"] == {"missing_audio": 1, "no_transcript": 1}
    assert summary["pretrain"]["train"]["examples"] == 4
    assert summary["pretrain"]["train"]["hours"] == round(2.5 / 3600, 4)
    for split, records in (("train", train), ("test", test)):
        expected = [f"{i}-sft" for i in records if unit_hash(0, "sft", i) < 0.5]
        sft = out / "sft" / f"{split}.jsonl"
        assert ([r["id"] for r in read_jsonl(sft)] if sft.exists() else []) == expected
        assert summary.get("sft", {}).get(split, 0) == len(expected)
    assert sum(summary["sft"].values()) > 0

    waveform = decode(out / "eval" / "librispeech_test_clean.jsonl")
    assert waveform.shape == (20000,)  # 1.25 s of FLAC at 16 kHz
    assert 0.15 < abs(waveform).max() < 0.25


def test_max_per_split_and_missing_layouts(tmp_path):
    source = build_librispeech(tmp_path / "src")
    summary = librispeech.prepare(config("librispeech", source, max_per_split=2), tmp_path / "out")
    assert summary["pretrain"]["train"]["examples"] == 2
    assert summary["eval"]["librispeech_test_clean"]["examples"] == 2

    with pytest.raises(CorpusLayoutError, match="no LibriSpeech subset folder"):
        librispeech.prepare(config("librispeech", tmp_path), tmp_path / "out2")
    with pytest.raises(CorpusLayoutError, match="LibriSpeech folder"):
        librispeech.prepare(config("librispeech", tmp_path / "absent"), tmp_path / "out2")
    (source / "dev-clean/84/121123/84-121123.trans.txt").unlink()
    with pytest.raises(CorpusLayoutError, match=r"84-121123\.trans\.txt"):
        librispeech.prepare(config("librispeech", source), tmp_path / "out3")
