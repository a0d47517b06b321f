"""The AISHELL-1 recipe on a tiny corpus in data_aishell.tgz's layout: speakers extracted or still in
their per-speaker wav/<speaker>.tar.gz."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from data_recipes import aishell1
from data_recipes.corpus import CorpusLayoutError
from tests.unit.data_recipes.fixtures_speech import by_id, config, decode, read_jsonl, run_cli, write_tone

# utterance -> (split, seconds, transcript line's words)
UTTERANCES = {
    "BAC009S0002W0122": ("train", 0.5, "而 对 楼市 成交 抑制 作用 最 大 的 限 购"),
    "BAC009S0002W0123": ("train", 0.75, "也 成为 地方 政府 的 眼中 钉"),
    "BAC009S0003W0121": ("train", 1.0, "苹果 iPhone X 发布"),
    "BAC009S0724W0121": ("dev", 0.5, "甚至 出现 交易 几乎 停滞 的 情况"),
    "BAC009S0764W0121": ("test", 1.25, "甚至 出现 交易 几乎 停滞 的 情况"),
    "BAC009S0764W0122": ("test", 0.25, "一二线 城市 虽然 也 处于 调整 中"),
}
ARCHIVED = ("S0003", "S0724")  # shipped as wav/<speaker>.tar.gz, as in data_aishell.tgz


def build_aishell(root: Path) -> Path:
    """<root>/data_aishell (+ resource_aishell) with UTTERANCES; a transcript line without a wav
    (S0002W0999), one with no words (S0002W0998) and a wav without a transcript line (S0764W0999)."""
    data = root / "data_aishell"
    lines = [f"{utt} {words}" for utt, (_, _, words) in UTTERANCES.items()]
    lines += ["BAC009S0002W0999 没有 音频", "BAC009S0002W0998", ""]
    (data / "transcript").mkdir(parents=True)
    (data / aishell1.TRANSCRIPT).write_text("\n".join(lines) + "\n", encoding="utf-8")
    staging = root / "staging"
    for utt, (split, seconds, _) in UTTERANCES.items():
        speaker = utt[6:11]
        base = staging if speaker in ARCHIVED else data / "wav"
        write_tone(base / split / speaker / f"{utt}.wav", seconds)
    write_tone(data / "wav/test/S0764/BAC009S0764W0999.wav", 0.5)
    for speaker in ARCHIVED:
        with tarfile.open(data / "wav" / f"{speaker}.tar.gz", "w:gz") as tar:
            for wav in sorted(staging.glob(f"*/{speaker}/*.wav")):
                tar.add(wav, arcname=str(wav.relative_to(staging)))
    (root / "resource_aishell").mkdir()
    (root / "resource_aishell" / "speaker.info").write_text("0002 F\n")
    return root


def test_cli_reads_extracted_and_archived_speakers(tmp_path):
    source = build_aishell(tmp_path / "src")
    out = tmp_path / "out"
    summary = run_cli("aishell1", source, out, "recipe.sft_fraction=0.5")

    train = by_id(out / "pretrain" / "train.jsonl")
    assert list(train) == ["BAC009S0002W0122", "BAC009S0002W0123", "BAC009S0003W0121"]
    assert train["BAC009S0002W0122"] == {
        "id": "BAC009S0002W0122",
        "audio": {"path": str(source / "data_aishell/wav/train/S0002/BAC009S0002W0122.wav"), "duration": 0.5},
        "task": "asr",
        "language": "zh",
        "text": "而对楼市成交抑制作用最大的限购",
    }
    assert train["BAC009S0003W0121"]["text"] == "苹果iPhone X发布"
    assert train["BAC009S0003W0121"]["audio"]["path"] == str(out / "audio/train/S0003/BAC009S0003W0121.wav")
    dev = by_id(out / "pretrain" / "dev.jsonl")
    assert list(dev) == ["BAC009S0724W0121"]
    assert dev["BAC009S0724W0121"]["audio"] == {
        "path": str(out / "audio/dev/S0724/BAC009S0724W0121.wav"),
        "duration": 0.5,
    }
    test = by_id(out / "pretrain" / "test.jsonl")
    assert [(k, r["audio"]["duration"]) for k, r in test.items()] == [
        ("BAC009S0764W0121", 1.25),
        ("BAC009S0764W0122", 0.25),
    ]
    assert by_id(out / "eval" / "aishell1_test.jsonl") == test
    assert by_id(out / "eval" / "aishell1_dev.jsonl") == dev
    assert sorted(p.name for p in (out / "audio" / ".extracted").iterdir()) == [
        "S0003.tar.gz",
        "S0724.tar.gz",
    ]

    assert summary["skipped"] == {"empty_text": 1, "missing_audio": 1, "no_transcript": 1}
    assert {split: s["examples"] for split, s in summary["pretrain"].items()} == {
        "train": 3,
        "dev": 1,
        "test": 2,
    }
    assert summary["pretrain"]["train"]["languages"] == {"zh": 3}
    sft = [
        r
        for split in ("train", "dev", "test")
        if (out / "sft" / f"{split}.jsonl").exists()
        for r in read_jsonl(out / "sft" / f"{split}.jsonl")
    ]
    assert len(sft) == sum(summary["sft"].values()) > 0
    assert all(r["messages"][1]["content"] == (train | dev | test)[r["id"][:-4]]["text"] for r in sft)

    assert decode(out / "pretrain" / "dev.jsonl").shape == (8000,)  # 0.5 s, from the extracted archive


def test_archives_are_extracted_once_and_layout_errors_name_the_path(tmp_path):
    source = build_aishell(tmp_path / "src")
    out = tmp_path / "out"
    aishell1.prepare(config("aishell1", source / "data_aishell"), out)  # data_aishell/ itself works too
    extracted = out / "audio/train/S0003/BAC009S0003W0121.wav"
    os.utime(extracted, (1_000_000, 1_000_000))  # extracting again would restore the archive's time
    summary = aishell1.prepare(config("aishell1", source), out)
    assert extracted.stat().st_mtime == 1_000_000
    assert summary["pretrain"]["train"]["examples"] == 3

    (source / "data_aishell" / aishell1.TRANSCRIPT).unlink()
    with pytest.raises(CorpusLayoutError, match="aishell_transcript_v0.8.txt"):
        aishell1.prepare(config("aishell1", source), tmp_path / "out2")
    empty = tmp_path / "empty" / "data_aishell"
    (empty / "transcript").mkdir(parents=True)
    (empty / aishell1.TRANSCRIPT).write_text("BAC009S0002W0122 而\n")
    (empty / "wav").mkdir()
    with pytest.raises(CorpusLayoutError, match=r"wav/\{train,dev,test\}"):
        aishell1.prepare(config("aishell1", empty.parent), tmp_path / "out3")
