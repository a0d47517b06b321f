"""The CoVoST 2 recipe on tiny TSVs in both official forms (get_covost_splits.py's split files and the
released covost_v2.<src>_<tgt>.tsv) over a tiny Common Voice 4 release of MP3 clips."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_recipes import covost2
from data_recipes.corpus import CorpusLayoutError
from tests.unit.data_recipes.fixtures_speech import by_id, config, decode, read_jsonl, run_cli, write_tone

CV4_COLUMNS = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accent"]
# Common Voice 4 clips: locale -> {clip number: (seconds, sentence)}; en 7 is listed but not downloaded.
CLIPS = {
    "en": {
        1: (0.5, "Use a back\\slash."),
        2: (1.0, "Good morning."),
        5: (0.75, "See you."),
        6: (0.5, "Thank you."),
    },
    "fr": {3: (1.0, "Bonjour à tous."), 4: (0.5, "Merci beaucoup.")},
}


def _tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """A TSV as pandas writes it with quoting=QUOTE_NONE, escapechar='\\' (get_covost_splits.py)."""
    escaped = [[cell.replace("\\", "\\\\") for cell in row] for row in rows]
    path.write_text("\n".join("\t".join(row) for row in [header, *escaped]) + "\n", encoding="utf-8")


def _clip(locale: str, number: int) -> str:
    return f"common_voice_{locale}_{number}.mp3"


def build_covost(root: Path) -> tuple[Path, Path]:
    """(source_dir with the TSVs of en_zh-CN as split files, en_de and fr_en as released, the Common
    Voice 4 release folder)."""
    cv = root / "cv-corpus-4-2019-12-10"
    for locale, clips in CLIPS.items():
        for number, (seconds, _) in clips.items():
            write_tone(cv / locale / "clips" / _clip(locale, number), seconds, 48000, "MP3")
    validated = [[f"spk{n}", _clip("en", n), s, "2", "0", "", "", ""] for n, (_, s) in CLIPS["en"].items()]
    _tsv(cv / "en" / "validated.tsv", CV4_COLUMNS, validated)
    source = root / "covost2"
    source.mkdir()
    en = {n: sentence for n, (_, sentence) in CLIPS["en"].items()} | {7: "Never downloaded."}
    split_rows = {
        "train": [[_clip("en", n), en[n], f"中文{n}", f"spk{n}"] for n in (1, 2)],
        "dev": [[_clip("en", 5), en[5], "", "spk5"]],
        "test": [[_clip("en", n), en[n], f"中文{n}", f"spk{n}"] for n in (6, 7)],
    }
    for split, rows in split_rows.items():
        _tsv(
            source / f"covost_v2.en_zh-CN.{split}.tsv", ["path", "sentence", "translation", "client_id"], rows
        )
    en_de = [(1, "train"), (2, "train_covost"), (5, "dev"), (6, "test"), (8, "test"), (1, "excluded")]
    _tsv(
        source / "covost_v2.en_de.tsv",
        ["path", "translation", "split"],
        [[_clip("en", n), f"Deutsch {n}", s] for n, s in en_de],
    )
    fr_en = [
        [_clip("fr", 3), CLIPS["fr"][3][1], "Hello everyone.", "train"],
        [_clip("fr", 4), CLIPS["fr"][4][1], "Thanks a lot.", "test"],
    ]
    _tsv(source / "covost_v2.fr_en.tsv", ["path", "sentence", "translation", "split"], fr_en)
    return source, cv


def test_cli_reads_both_tsv_forms_over_common_voice_audio(tmp_path):
    source, cv = build_covost(tmp_path / "src")
    out = tmp_path / "out"
    summary = run_cli("covost2", source, out, f"recipe.audio_dir={cv}", "recipe.sft_fraction=0.5")

    train = by_id(out / "pretrain" / "train.jsonl")
    assert list(train) == [
        "covost2-common_voice_en_1-en_de",
        "covost2-common_voice_en_1-asr",
        "covost2-common_voice_en_2-en_de",
        "covost2-common_voice_en_2-asr",
        "covost2-common_voice_en_1-en_zh-CN",
        "covost2-common_voice_en_2-en_zh-CN",
        "covost2-common_voice_fr_3-fr_en",
        "covost2-common_voice_fr_3-asr",
    ]
    audio = {"path": str(cv / "en/clips/common_voice_en_1.mp3"), "duration": 0.5}
    assert train["covost2-common_voice_en_1-en_zh-CN"] == {
        "id": "covost2-common_voice_en_1-en_zh-CN",
        "audio": audio,
        "language": "en",
        "task": "s2tt",
        "target_language": "zh-CN",
        "text": "中文1",
    }
    assert train["covost2-common_voice_en_1-asr"] == {
        "id": "covost2-common_voice_en_1-asr",
        "audio": audio,
        "language": "en",
        "task": "asr",
        "text": "Use a back\\slash.",  # the TSVs' escapechar undone
    }
    assert train["covost2-common_voice_en_2-en_de"]["text"] == "Deutsch 2"  # split train_covost
    assert train["covost2-common_voice_fr_3-fr_en"]["target_language"] == "en"
    assert train["covost2-common_voice_fr_3-asr"]["text"] == "Bonjour à tous."

    dev = by_id(out / "pretrain" / "dev.jsonl")
    assert list(dev) == ["covost2-common_voice_en_5-en_de", "covost2-common_voice_en_5-asr"]
    assert sorted(p.name for p in (out / "eval").iterdir()) == [
        "covost2_en_de_test.jsonl",
        "covost2_en_zh_test.jsonl",
        "covost2_fr_en_test.jsonl",
    ]
    assert list(by_id(out / "eval" / "covost2_en_zh_test.jsonl")) == ["covost2-common_voice_en_6-en_zh-CN"]
    fr_test = by_id(out / "eval" / "covost2_fr_en_test.jsonl")
    assert fr_test["covost2-common_voice_fr_4-fr_en"]["text"] == "Thanks a lot."
    assert fr_test["covost2-common_voice_fr_4-fr_en"]["audio"]["duration"] == 0.5

    # en_zh-CN: test clip 7 has no mp3, dev's translation is empty; en_de: clip 8 is not in
    # validated.tsv, one row's split is none of the four.
    assert summary["skipped"] == {
        "empty_text": 1,
        "missing_audio": 1,
        "no_source_sentence": 1,
        "unknown_split": 1,
    }
    assert summary["pretrain"]["test"]["tasks"] == {"s2tt": 3, "asr": 2}
    sft = [
        r
        for s in ("train", "dev", "test")
        if (out / "sft" / f"{s}.jsonl").exists()
        for r in read_jsonl(out / "sft" / f"{s}.jsonl")
    ]
    assert len(sft) == sum(summary["sft"].values()) > 0

    assert abs(decode(out / "eval" / "covost2_fr_en_test.jsonl").shape[0] - 8000) <= 8  # MP3, 48 -> 16 kHz


def test_pairs_by_base_language_clips_folder_and_layout_errors(tmp_path):
    source, cv = build_covost(tmp_path / "src")
    cfg = config("covost2", source, audio_dir=str(cv / "en" / "clips"), languages=["en_zh"])
    summary = covost2.prepare(cfg, tmp_path / "out")
    assert summary["pretrain"]["train"]["tasks"] == {"s2tt": 2, "asr": 2}
    assert list(summary["eval"]) == ["covost2_en_zh_test"]

    with pytest.raises(CorpusLayoutError, match=r"'en_ja'.*pairs found: \['en_de', 'en_zh-CN', 'fr_en'\]"):
        covost2.prepare(config("covost2", source, audio_dir=str(cv), languages=["en_ja"]), tmp_path / "o")
    with pytest.raises(CorpusLayoutError, match="recipe.audio_dir"):
        covost2.prepare(config("covost2", source), tmp_path / "o")
    with pytest.raises(CorpusLayoutError, match=r"'fr' at .*fr/clips"):
        covost2.prepare(
            config("covost2", source, audio_dir=str(cv / "en" / "clips"), languages=["fr_en"]), tmp_path / "o"
        )
    (cv / "en" / "validated.tsv").unlink()
    with pytest.raises(CorpusLayoutError, match="validated.tsv"):
        covost2.prepare(config("covost2", source, audio_dir=str(cv), languages=["en_de"]), tmp_path / "o")
