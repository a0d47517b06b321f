"""The FLEURS recipe on a tiny copy of the google/fleurs hub layout: TSVs without a header, audio as
the shipped tarballs (en_us) or already extracted (cmn_hans_cn)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_recipes import fleurs
from data_recipes.corpus import CorpusLayoutError, extract_archive
from lalm.config.data import CorpusRecipeConfig
from lalm.data.dataset import ManifestDataset
from lalm.data.manifest import read_manifest_records

ROOT = Path(__file__).resolve().parents[3]
RATE = 16000
# locale -> split -> rows (sentence id, file name, raw transcription, seconds); None: a bad row.
CLIPS = {
    "en_us": {
        "train": [
            ("1001", "111.wav", 'He said "hello" there.', 0.5),
            ("1002", "112.wav", "A  second one.", 0.625),
        ],
        "dev": [("2001", "121.wav", "Dev sentence.", 0.375)],
        # One sentence read by two speakers: the sentence id repeats, the file name does not.
        "test": [("3001", "131.wav", "Test one.", 0.25), ("3001", "132.wav", "Test one.", 0.3)],
    },
    "cmn_hans_cn": {
        "train": [("4001", "201.wav", "你好，世界。", 0.5)],
        "dev": [("4002", "211.wav", "开发集。", 0.25)],
        "test": [("4003", "221.wav", "测试集。", 0.75)],
    },
}


def _wav_bytes(seconds: float, seed: int) -> bytes:
    wave = np.random.default_rng(seed).uniform(-0.3, 0.3, int(seconds * RATE)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, wave, RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _tsv_line(sentence: str, name: str, raw: str, seconds: float) -> str:
    normalised = raw.lower().strip(".")
    chars = " ".join(normalised.replace(" ", "|"))
    return "\t".join((sentence, name, raw, normalised, chars, str(int(seconds * RATE)), "MALE"))


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def build_fleurs(root: Path, extra_rows: dict[str, list[str]] | None = None) -> Path:
    """data/en_us with tarballs (members <split>/<name>), data/cmn_hans_cn with audio/<split>/."""
    for index, (locale, splits) in enumerate(CLIPS.items()):
        folder = root / "data" / locale
        (folder / "audio").mkdir(parents=True)
        for split, rows in splits.items():
            lines = [_tsv_line(*row) for row in rows] + (extra_rows or {}).get(f"{locale}/{split}", [])
            (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
            wavs = {
                name: _wav_bytes(seconds, index * 100 + i) for i, (_, name, _, seconds) in enumerate(rows)
            }
            if locale == "en_us":
                _tar(folder / "audio" / f"{split}.tar.gz", {f"{split}/{n}": b for n, b in wavs.items()})
            else:
                (folder / "audio" / split).mkdir()
                for name, payload in wavs.items():
                    (folder / "audio" / split / name).write_bytes(payload)
    return root


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_cli_writes_asr_and_lid_records_with_official_splits(tmp_path):
    source, out = build_fleurs(tmp_path / "fleurs"), tmp_path / "out"
    command = [
        sys.executable, "scripts/prepare_data.py", "recipe=fleurs", f"source_dir={source}",
        f"output_dir={out}", "recipe.num_workers=1", "recipe.sft_fraction=1.0",
    ]  # fmt: skip
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)

    extracted = out / "audio" / "en_us"
    for split, rows in CLIPS["en_us"].items():  # only the tarballs' WAVs the TSV names, by file name
        assert sorted(p.name for p in (extracted / split).iterdir()) == sorted(row[1] for row in rows)
    for split in ("train", "dev", "test"):
        records = _lines(out / "pretrain" / f"{split}.jsonl")
        expected = []
        for locale, language in (("cmn_hans_cn", "zh"), ("en_us", "en")):
            folder = (
                source / "data" / locale / "audio" / split if locale == "cmn_hans_cn" else extracted / split
            )
            for _, name, raw, seconds in CLIPS[locale][split]:
                clip, audio = (
                    f"fleurs-{locale}-{Path(name).stem}",
                    {"path": str(folder / name), "duration": seconds},
                )
                text = " ".join(raw.split())
                expected.append(
                    {"id": f"{clip}-asr", "audio": audio, "language": language, "task": "asr", "text": text}
                )
                expected.append({"id": f"{clip}-lid", "audio": audio, "language": language, "task": "lid"})
        lid_names = {"en": {"en": "English", "zh": "英语"}, "zh": {"en": "Chinese", "zh": "中文"}}
        for record in records:
            if record["task"] == "lid":
                assert record.pop("text") == lid_names[record["language"]][record.pop("prompt_language")]
        assert records == expected
        assert len(_lines(out / "sft" / f"{split}.jsonl")) == len(records)  # sft_fraction 1.0

    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["eval"]) == ["fleurs_en_test", "fleurs_lid_test", "fleurs_zh_test"]
    assert [r["id"] for r in _lines(out / "eval" / "fleurs_en_test.jsonl")] == [
        "fleurs-en_us-131-asr",
        "fleurs-en_us-132-asr",
    ]
    assert [r["id"] for r in _lines(out / "eval" / "fleurs_zh_test.jsonl")] == ["fleurs-cmn_hans_cn-221-asr"]
    assert len(_lines(out / "eval" / "fleurs_lid_test.jsonl")) == 3
    assert summary["skipped"] == {}
    assert summary["pretrain"]["train"]["languages"] == {"zh": 2, "en": 4}

    dataset = ManifestDataset.from_manifest(str(out / "pretrain" / "train.jsonl"), "pretrain")
    example = dataset[2]  # en_us 111.wav, extracted from train.tar.gz
    wave = example["messages"][0]["content"][0]["waveform"]
    assert example["task"] == "asr" and wave.shape == (8000,) and 0.1 < float(np.abs(wave).max()) <= 0.31


def test_bad_rows_are_counted_and_left_out(tmp_path):
    bad = {
        "en_us/train": [
            "1003\t113.wav\tonly five\tcolumns\t8000",  # malformed
            _tsv_line("1001", "111.wav", "Same file again.", 0.5),  # duplicate file name
            _tsv_line("1004", "114.wav", "Not in the tarball.", 0.5),  # missing audio
            "",  # a blank line is not a row
        ],
        "cmn_hans_cn/test": [_tsv_line("4004", "222.wav", "   ", 0.5)],  # empty transcription
    }
    source = build_fleurs(tmp_path / "fleurs", bad)
    cfg = CorpusRecipeConfig(name="fleurs", source_dir=str(source), num_workers=2, sft_fraction=0.0)
    summary = fleurs.prepare(cfg, tmp_path / "out")
    assert summary["skipped"] == {"duplicate": 1, "empty_text": 1, "malformed_row": 1, "missing_audio": 1}
    assert summary["pretrain"]["train"]["examples"] == 6 and summary["pretrain"]["test"]["examples"] == 6
    assert "sft" not in summary


def test_languages_pick_locales_by_fleurs_name_or_iso_code(tmp_path):
    source = build_fleurs(tmp_path / "fleurs")
    cfg = CorpusRecipeConfig(name="fleurs", source_dir=str(source), languages=["zh"], num_workers=1)
    summary = fleurs.prepare(cfg, tmp_path / "zh")
    assert sorted(summary["eval"]) == ["fleurs_lid_test", "fleurs_zh_test"]
    assert not (tmp_path / "zh" / "audio").exists()  # en_us's tarballs were not touched
    records = read_manifest_records(tmp_path / "zh" / "pretrain" / "dev.jsonl", "pretrain")
    assert [r["id"] for r in records] == ["fleurs-cmn_hans_cn-211-asr", "fleurs-cmn_hans_cn-211-lid"]

    cfg = CorpusRecipeConfig(name="fleurs", source_dir=str(source), languages=["en_us"], num_workers=1)
    assert fleurs.prepare(cfg, tmp_path / "en")["pretrain"]["dev"]["languages"] == {"en": 2}
    with pytest.raises(CorpusLayoutError, match=r"\['fr_fr'\] not found .*found: \['cmn_hans_cn', 'en_us'\]"):
        fleurs.prepare(
            CorpusRecipeConfig(name="fleurs", source_dir=str(source), languages=["fr_fr"]), tmp_path / "x"
        )


def test_locale_codes_map_to_iso_639():
    assert [
        fleurs.fleurs_language(c) for c in ("en_us", "cmn_hans_cn", "yue_hant_hk", "es_419", "fil_ph")
    ] == [
        "en",
        "zh",
        "yue",
        "es",
        "fil",
    ]
    with pytest.raises(CorpusLayoutError, match="'xx_zz' names no ISO 639 language"):
        fleurs.fleurs_language("xx_zz")


def test_rerun_keeps_extracted_files_and_missing_layout_is_named(tmp_path):
    source = build_fleurs(tmp_path / "fleurs")
    archive = source / "data" / "en_us" / "audio" / "dev.tar.gz"
    target = tmp_path / "extracted"
    assert extract_archive(archive, target, frozenset({"121.wav"})) == 1
    assert extract_archive(archive, target, frozenset({"121.wav"})) == 0
    assert sorted(p.name for p in target.iterdir()) == ["121.wav"]

    archive.unlink()
    cfg = CorpusRecipeConfig(name="fleurs", source_dir=str(source), num_workers=1)
    with pytest.raises(CorpusLayoutError, match=r"en_us/audio/dev/ or .*en_us/audio/dev\.tar\.gz"):
        fleurs.prepare(cfg, tmp_path / "out")
    (source / "data" / "cmn_hans_cn" / "dev.tsv").unlink()
    with pytest.raises(
        CorpusLayoutError, match=r"expected a FLEURS transcript table at .*cmn_hans_cn/dev\.tsv"
    ):
        fleurs.prepare(cfg, tmp_path / "out")
    shutil.rmtree(source / "data" / "cmn_hans_cn")
    shutil.rmtree(source / "data" / "en_us")
    with pytest.raises(CorpusLayoutError, match=r"no FLEURS locale folder \(data/<locale>/\) in"):
        fleurs.prepare(cfg, tmp_path / "out")
    with pytest.raises(CorpusLayoutError, match="expected the FLEURS data/ folder at"):
        fleurs.prepare(
            CorpusRecipeConfig(name="fleurs", source_dir=str(tmp_path / "nowhere")), tmp_path / "out"
        )
