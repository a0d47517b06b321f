"""The Common Voice recipe on a tiny release in Mozilla's layout: <locale>/{train,dev,test}.tsv and
48 kHz MP3 clips, with the current release's columns (en) and an older release's (zh-CN)."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_recipes import commonvoice
from data_recipes.corpus import CorpusLayoutError
from tests.unit.data_recipes.fixtures_speech import by_id, config, decode, read_jsonl, run_cli, write_tone

# Release 17's columns; releases before it lack sentence_id, sentence_domain and variant.
COLUMNS_17 = [
    "client_id",
    "path",
    "sentence_id",
    "sentence",
    "sentence_domain",
    "up_votes",
    "down_votes",
    "age",
    "gender",
    "accents",
    "variant",
    "locale",
    "segment",
]
COLUMNS_OLD = [
    "client_id",
    "path",
    "sentence",
    "up_votes",
    "down_votes",
    "age",
    "gender",
    "accents",
    "locale",
    "segment",
]

# locale -> split -> [(clip number, seconds or None for no mp3, sentence, gender)]
RELEASE = {
    "en": {
        "train": [
            (1, 0.5, 'He said "hello" to everyone.', "male_masculine"),
            (2, 1.0, "The  quick brown fox.", ""),
            (3, None, "This clip was never downloaded.", "female_feminine"),
            (4, 0.5, "", "female_feminine"),
        ],
        "dev": [(5, 0.75, "A dev sentence.", "female_feminine")],
        "test": [
            (6, 1.0, "A test sentence.", "do_not_wish_to_say"),
            (7, 0.5, "Another one.", "male_masculine"),
        ],
    },
    "zh-CN": {
        "train": [(8, 0.5, "今天天气很好。", "male")],
        "dev": [],
        "test": [(9, 0.75, "我们去公园吧。", "other")],
    },
    "zh-HK": {"train": [], "dev": [], "test": [(10, 0.5, "你食咗飯未呀？", "female")]},
    "tok": {"train": [(11, 0.5, "toki pona li pona.", "")], "dev": [], "test": []},
}


def build_release(root: Path) -> Path:
    release = root / "cv-corpus-17.0-2024-03-15"
    for locale, splits in RELEASE.items():
        folder = release / locale
        (folder / "clips").mkdir(parents=True)
        columns = COLUMNS_OLD if locale == "zh-CN" else COLUMNS_17
        for split, rows in splits.items():
            lines = ["\t".join(columns)]
            for number, seconds, sentence, gender in rows:
                clip = f"common_voice_{locale}_{number}.mp3"
                if seconds is not None:
                    write_tone(folder / "clips" / clip, seconds, 48000, "MP3")
                cells = {
                    "client_id": f"speaker{number}",
                    "path": clip,
                    "sentence": sentence,
                    "gender": gender,
                }
                cells |= {"up_votes": "2", "down_votes": "0", "locale": locale, "sentence_id": f"s{number}"}
                lines.append("\t".join(cells.get(column, "") for column in columns))
            (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for extra in ("validated.tsv", "other.tsv", "invalidated.tsv", "reported.tsv", "clip_durations.tsv"):
            (folder / extra).write_text("not read\n")
    return release


def test_cli_writes_asr_lid_gender_per_clip(tmp_path):
    release = build_release(tmp_path / "src")
    out = tmp_path / "out"
    summary = run_cli("commonvoice", release, out, "recipe.sft_fraction=0.5")

    train = by_id(out / "pretrain" / "train.jsonl")
    assert list(train) == [
        "common_voice_en_1-asr",
        "common_voice_en_1-lid",
        "common_voice_en_1-gender",
        "common_voice_en_2-asr",
        "common_voice_en_2-lid",
        "common_voice_zh-CN_8-asr",
        "common_voice_zh-CN_8-lid",
        "common_voice_zh-CN_8-gender",
    ]
    audio = {"path": str(release / "en/clips/common_voice_en_1.mp3"), "duration": 0.5}
    assert train["common_voice_en_1-asr"] == {
        "id": "common_voice_en_1-asr",
        "audio": audio,
        "language": "en",
        "task": "asr",
        "text": 'He said "hello" to everyone.',
    }
    assert train["common_voice_en_1-gender"] == {
        "id": "common_voice_en_1-gender",
        "audio": audio,
        "language": "en",
        "task": "gender",
        "text": "male",
        "prompt_language": "en",
    }
    assert train["common_voice_en_2-asr"]["text"] == "The quick brown fox."
    assert train["common_voice_zh-CN_8-asr"]["language"] == "zh-CN"
    assert train["common_voice_zh-CN_8-gender"]["text"] == "male"
    names = {"en": {"en": "English", "zh": "英语"}, "zh-CN": {"en": "Chinese", "zh": "中文"}}
    for record in (r for r in train.values() if r["task"] == "lid"):
        assert record["text"] == names[record["language"]][record["prompt_language"]]

    assert list(by_id(out / "pretrain" / "dev.jsonl")) == [
        f"common_voice_en_5-{t}" for t in ("asr", "lid", "gender")
    ]
    test = by_id(out / "pretrain" / "test.jsonl")
    assert [i for i in test if i.endswith("-gender")] == [
        "common_voice_en_7-gender",
        "common_voice_zh-HK_10-gender",
    ]
    assert test["common_voice_zh-HK_10-lid"]["language"] == "yue-HK"
    assert test["common_voice_zh-HK_10-lid"]["text"] in ("Cantonese", "粤语")
    assert test["common_voice_en_6-asr"]["audio"]["duration"] == 1.0

    assert sorted(p.name for p in (out / "eval").iterdir()) == [
        "commonvoice_en_test.jsonl",
        "commonvoice_zh-CN_test.jsonl",
        "commonvoice_zh-HK_test.jsonl",
    ]
    assert by_id(out / "eval" / "commonvoice_zh-CN_test.jsonl") == {
        "common_voice_zh-CN_9-asr": test["common_voice_zh-CN_9-asr"]
    }
    assert list(by_id(out / "eval" / "commonvoice_en_test.jsonl")) == [
        "common_voice_en_6-asr",
        "common_voice_en_7-asr",
    ]

    assert summary["skipped"] == {"empty_text": 1, "missing_audio": 1, "unknown_language": 1}
    assert summary["pretrain"]["train"]["tasks"] == {"asr": 3, "lid": 3, "gender": 2}
    sft = [
        r
        for s in ("train", "dev", "test")
        if (out / "sft" / f"{s}.jsonl").exists()
        for r in read_jsonl(out / "sft" / f"{s}.jsonl")
    ]
    assert len(sft) == sum(summary["sft"].values()) > 0

    waveform = decode(out / "eval" / "commonvoice_en_test.jsonl")  # MP3 at 48 kHz -> 16 kHz
    assert abs(waveform.shape[0] - 16000) <= 16
    assert 0.1 < abs(waveform).max() < 0.3


def test_languages_pick_locales_and_bad_layouts_raise(tmp_path):
    release = build_release(tmp_path / "src")
    summary = commonvoice.prepare(config("commonvoice", release, languages=["zh-HK"]), tmp_path / "out")
    assert summary["pretrain"]["test"]["languages"] == {"yue-HK": 3}
    assert "skipped" in summary and summary["skipped"] == {}

    with pytest.raises(ValueError, match="'tok'"):
        commonvoice.prepare(config("commonvoice", release, languages=["tok"]), tmp_path / "out2")
    with pytest.raises(CorpusLayoutError, match=r"'fr' \(its train.tsv\)"):
        commonvoice.prepare(config("commonvoice", release, languages=["fr"]), tmp_path / "out2")
    (release / "en" / "dev.tsv").write_text("client_id\tpath\n")
    with pytest.raises(CorpusLayoutError, match=r"dev.tsv: the header .* lacks the columns \['sentence'\]"):
        commonvoice.prepare(config("commonvoice", release, languages=["en"]), tmp_path / "out2")
    with pytest.raises(CorpusLayoutError, match="no <locale>/train.tsv"):
        commonvoice.prepare(config("commonvoice", tmp_path), tmp_path / "out2")
