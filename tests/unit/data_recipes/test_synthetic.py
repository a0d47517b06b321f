"""The synthetic recipe: deterministic, 16 kHz mono audio of the stated durations, disjoint splits."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf

from data_recipes import synthetic
from data_recipes import synthetic_text as st
from data_recipes.synthetic import split_of
from lalm.config.data import SyntheticRecipeConfig
from lalm.data.manifest import load_manifest, read_manifest_records
from tests.conftest import TEST_CORPUS

STAGES = ("pretrain", "sft", "dpo")
SPLITS = ("train", "dev", "test")


def _fingerprint(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "summary.json"
    }


def test_deterministic_for_a_seed_whatever_the_worker_count(tmp_path):
    small = SyntheticRecipeConfig(size=0.01, seed=3, num_workers=1)
    synthetic.prepare(small, tmp_path / "a")
    synthetic.prepare(SyntheticRecipeConfig(size=0.01, seed=3, num_workers=2), tmp_path / "b")
    synthetic.prepare(SyntheticRecipeConfig(size=0.01, seed=4, num_workers=2), tmp_path / "c")
    first, second = _fingerprint(tmp_path / "a"), _fingerprint(tmp_path / "b")
    assert len(first) > 50 and first == second
    assert _fingerprint(tmp_path / "c") != first


def test_audio_is_16k_mono_of_the_stated_duration(corpus_dir):
    checked = 0
    for stage in STAGES:
        records = read_manifest_records(corpus_dir / stage / "train.jsonl", stage)
        for record in records[:40]:
            refs = (
                [record["audio"]]
                if stage == "pretrain"
                else [
                    item["audio"]
                    for m in record.get("messages") or record["prompt"]
                    for item in m["content"]
                    if item["type"] == "audio"
                ]
            )
            for ref in refs:
                info = sf.info(ref["path"])
                assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
                assert abs(info.frames / 16000 - ref["duration"]) < 1e-5
                assert 0.3 < ref["duration"] <= 6.0
                checked += 1
    assert checked > 100


def _texts(corpus: Path, split: str) -> set[str]:
    records = read_manifest_records(corpus / "pretrain" / f"{split}.jsonl", "pretrain")
    return {r["text"] for r in records if r["task"] == "asr"}


def test_splits_share_no_sentence(corpus_dir):
    texts = {split: _texts(corpus_dir, split) for split in SPLITS}
    assert all(len(t) >= 4 for t in texts.values())
    assert not texts["train"] & texts["dev"]
    assert not texts["train"] & texts["test"]
    assert not texts["dev"] & texts["test"]
    assert split_of("trip:anna:market:mon", 0.1) == split_of("trip:anna:market:mon", 0.1)


def test_training_pairs_never_reject_a_held_out_sentence(corpus_dir):
    held_out = {
        st.render(key, language).text
        for key in st.statement_keys()
        if split_of(key, 0.1) != "train"
        for language in st.LANGUAGES
    }
    dpo = read_manifest_records(corpus_dir / "dpo" / "train.jsonl", "dpo")
    asr = [r for r in dpo if r["task"] == "asr"]
    assert len(asr) >= 10
    assert not {r["rejected"] for r in asr} & held_out


def test_manifests_cover_every_stage_mode_language_and_task(corpus_dir):
    pretrain = load_manifest(corpus_dir / "pretrain" / "train.jsonl", "pretrain")
    assert set(pretrain["task"]) == {"asr", "s2tt", "lid", "gender", "style", "sound", "caption", "count"}
    assert set(pretrain["language"]) - {None} == {"en", "zh", "yue", "fr", "it", "es", "de", "ja"}
    sft = read_manifest_records(corpus_dir / "sft" / "train.jsonl", "sft")
    modes = Counter(r["mode"] for r in sft)
    assert modes["chat"] > 10 and modes["analysis"] > 10
    multi = Counter(r["mode"] for r in sft if sum(m["role"] == "assistant" for m in r["messages"]) > 1)
    assert multi["chat"] > 0 and multi["analysis"] > 0
    # Chat-mode user turns are audio only: the instruction is spoken.
    assert all(
        item["type"] == "audio"
        for r in sft
        if r["mode"] == "chat"
        for m in r["messages"]
        if m["role"] == "user"
        for item in m["content"]
    )
    # Every analysis task appears in SFT instructions (an earlier rotation never asked for lid or style).
    lines = (corpus_dir / "sft" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    analysis_tasks = Counter(json.loads(line).get("task") for line in lines)
    assert {"asr", "s2tt", "lid", "gender", "style", "sound", "caption"} <= set(analysis_tasks)
    assert analysis_tasks["lid"] >= 5 and analysis_tasks["style"] >= 5
    dpo = read_manifest_records(corpus_dir / "dpo" / "train.jsonl", "dpo")
    assert {r["mode"] for r in dpo} == {"chat", "analysis"}
    assert all(r["chosen"] != r["rejected"] for r in dpo)
    summary = json.loads((corpus_dir / "summary.json").read_text())
    assert summary["records"]["pretrain/train"] == len(pretrain)


def test_spoken_question_answers_are_right(corpus_dir):
    from data_recipes import synthetic_text as st

    dpo = read_manifest_records(corpus_dir / "dpo" / "train.jsonl", "dpo")
    chat = [r for r in dpo if r["mode"] == "chat"]
    assert chat
    value = {st.number_word(n, "en").lower(): n for n in range(21)}
    en = [r for r in chat if r["chosen"].isascii() and " plus " in r["chosen"] and " is " in r["chosen"]]
    assert en
    for record in en:
        words = record["chosen"].rstrip(".").lower().split()
        a, b, total = (value[w] for w in (words[0], words[2], words[-1]))
        assert a + b == total


def test_dpo_asr_languages_limits_transcript_pairs(tmp_path):
    from data_recipes.synthetic_records import dpo_records

    cfg = SyntheticRecipeConfig(size=0.05)
    clips = [c for c in synthetic.plan_clips(cfg) if c.split == "train"]
    for clip in clips:
        clip.info["duration"] = 1.0  # not rendered: only the records are built
    every = dpo_records(clips, cfg.seed)
    english = dpo_records(clips, cfg.seed, asr_languages=("en",))
    language_of = {f"{c.id}-dpo": c.info.get("language") for c in clips}
    assert {language_of[r["id"]] for r in every if r["task"] == "asr"} - {"en"}
    assert {language_of[r["id"]] for r in english if r["task"] == "asr"} == {"en"}
    others = [r for r in every if not (r["task"] == "asr" and language_of[r["id"]] != "en")]
    assert english == others  # the rest of the pairs is unchanged
    with pytest.raises(ValueError, match=r"unknown languages \['xx'\]"):
        synthetic.prepare(SyntheticRecipeConfig(size=0.01, dpo_asr_languages=["xx"]), tmp_path)
    assert not (tmp_path / "audio").exists()  # refused before rendering anything


def test_unseen_voices_speak_only_in_their_own_split(corpus_dir):
    clips = synthetic.plan_clips(TEST_CORPUS)
    unseen = {v for voices in synthetic.UNSEEN_VOICES.values() for v in voices}
    seen = {v for voices in synthetic.VOICES.values() for v in voices}
    assert not unseen & seen
    by_split: dict[str, set[str]] = {}
    for clip in clips:
        if "variant" in clip.info:
            by_split.setdefault(clip.split, set()).add(clip.info["variant"])
    assert by_split[synthetic.UNSEEN_SPLIT] <= unseen and len(by_split[synthetic.UNSEEN_SPLIT]) >= 3
    for split in SPLITS:
        assert not by_split[split] & unseen, split
    # Its sentences are the test split's; its records are pretraining ones, every speech task each.
    test_keys = {c.info["key"] for c in clips if c.split == "test" and c.kind == "speech"}
    unseen_keys = {c.info["key"] for c in clips if c.split == synthetic.UNSEEN_SPLIT}
    assert unseen_keys <= {
        k for k in st.statement_keys() if split_of(k, TEST_CORPUS.heldout_fraction) == "test"
    }
    assert test_keys  # the test split speaks too
    records = read_manifest_records(corpus_dir / "pretrain" / f"{synthetic.UNSEEN_SPLIT}.jsonl", "pretrain")
    tasks = Counter(r["task"] for r in records)
    unseen_clips = [c for c in clips if c.split == synthetic.UNSEEN_SPLIT]
    assert tasks["asr"] == tasks["lid"] == tasks["gender"] == len(unseen_clips) == len(records) // 5
    assert not (corpus_dir / "sft" / f"{synthetic.UNSEEN_SPLIT}.jsonl").exists()
    assert not (corpus_dir / "dpo" / f"{synthetic.UNSEEN_SPLIT}.jsonl").exists()
