"""The AIR-Bench recipe on a tiny copy of the qyang1021/AIR-Bench-Dataset layout: Chat/Chat_meta.json and
Foundation/Foundation_meta.json (JSON lists) beside <task_name>_<dataset_name>/ audio folders of WAV, MP3
and (Audio_Grounding) FLAC files named .wav in the meta."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_recipes import airbench
from data_recipes.corpus import CorpusLayoutError
from lalm.config.data import CorpusRecipeConfig
from lalm.data.dataset import ManifestDataset
from lalm.data.manifest import read_manifest_records
from lalm.eval.runner import manifest_kind
from lalm.eval.scoring import score_generations

ROOT = Path(__file__).resolve().parents[3]
RATE = 16000


def _chat(uniq_id: int, task: str, dataset: str, path: str, question: str, answer: str) -> dict:
    return {
        "path": path,
        "question": question,
        "answer_gt": answer,
        "task_name": task,
        "dataset_name": dataset,
        "uniq_id": uniq_id,
        "meta_info": "",
    }


CHAT = [
    _chat(
        0,
        "speech_dialogue_QA",
        "fisher",
        "568.38_596.46.wav",
        "What does the first speaker imply?",
        "He is worried.",
    ),
    _chat(1, "sound_QA", "clotho", "rain 1.mp3", "Is it raining?", "Yes, steadily."),
    _chat(2, "speech_and_music_QA", "mix", "absent.wav", "What plays?", "A piano."),  # missing_audio
    _chat(3, "music_QA", "MusicCaps", "song.wav", "Which genre?", ""),  # incomplete_entry
    _chat(0, "speech_QA", "iemocap", "again.wav", "Again?", "Yes."),  # duplicate_id
]


def _foundation(uniq_id: int, task: str, dataset: str, path: str, choices: list[str], answer: str) -> dict:
    entry = {"path": path, "question": f"Question {uniq_id}?", "answer_gt": answer, "task_name": task}
    entry.update({f"choice_{letter}": choice for letter, choice in zip("abcd", choices, strict=False)})
    return {**entry, "dataset_name": dataset, "uniq_id": uniq_id}


FOUNDATION = [
    _foundation(10, "Sound_AQA", "clothoaqa", "q10.wav", ["rain", "a dog", "birds", "a car"], "birds"),
    _foundation(
        11, "Audio_Grounding", "AudioGrounding", "g11.wav", ["[0.0, 1.5]", "[2.0, 3.0]"], "[2.0, 3.0]"
    ),
    _foundation(
        12, "Speaker_Gender_Recognition", "meld", "s12.wav", ["male", "female"], "child"
    ),  # not a choice
    _foundation(13, "Music_AQA", "music_avqa", "absent.wav", ["yes", "no"], "no"),  # missing_audio
    _foundation(14, "Sound_AQA", "avqa", "q14.wav", ["yes", "no", "maybe"], "yes"),  # Sound_AQA's 2nd dataset
]
# Files shipped: (track, folder, file, format, seconds). The Audio_Grounding clip is FLAC though its
# meta entry names .wav, as in the real corpus.
FILES = [
    ("Chat", "speech_dialogue_QA_fisher", "568.38_596.46.wav", "WAV", 0.5),
    ("Chat", "sound_QA_clotho", "rain 1.mp3", "MP3", 1.0),
    ("Chat", "speech_QA_iemocap", "again.wav", "WAV", 0.25),
    ("Foundation", "Sound_AQA_clothoaqa", "q10.wav", "WAV", 0.75),
    ("Foundation", "Audio_Grounding_AudioGrounding", "g11.flac", "FLAC", 0.5),
    ("Foundation", "Speaker_Gender_Recognition_meld", "s12.wav", "WAV", 0.25),
    ("Foundation", "Sound_AQA_avqa", "q14.wav", "WAV", 0.25),
]


def build_airbench(root: Path) -> Path:
    for track, entries in (("Chat", CHAT), ("Foundation", FOUNDATION)):
        (root / track).mkdir(parents=True)
        (root / track / f"{track}_meta.json").write_text(json.dumps(entries, indent=4))
    for index, (track, folder, name, kind, seconds) in enumerate(FILES):
        (root / track / folder).mkdir(exist_ok=True)
        t = np.arange(int(seconds * RATE)) / RATE
        wave = (0.3 * np.sin(2 * np.pi * (220 + 50 * index) * t)).astype(np.float32)
        sf.write(root / track / folder / name, wave, RATE, format=kind)
    return root


def _config(source: Path, **overrides: object) -> CorpusRecipeConfig:
    return CorpusRecipeConfig(name="airbench", source_dir=str(source), num_workers=1, **overrides)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_chat_becomes_sft_conversations_and_foundation_lettered_choices_per_task(tmp_path):
    source = build_airbench(tmp_path / "AIR-Bench-Dataset").resolve()
    summary = airbench.prepare(_config(source), tmp_path / "out")
    chat = _lines(tmp_path / "out" / "eval" / "airbench_chat.jsonl")
    assert [c["id"] for c in chat] == ["airbench-chat-0-sft", "airbench-chat-1-sft"]
    assert chat[0] == {
        "id": "airbench-chat-0-sft",
        "mode": "analysis",
        "task": "chat",
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "audio",
                        "audio": {
                            "path": str(source / "Chat/speech_dialogue_QA_fisher/568.38_596.46.wav"),
                            "duration": 0.5,
                        },
                    },
                    {"type": "text", "text": "What does the first speaker imply?"},
                ],
            },
            {"role": "assistant", "content": "He is worried."},
        ],
    }
    mp3 = chat[1]["messages"][0]["content"][0]["audio"]
    assert mp3["path"] == str(source / "Chat/sound_QA_clotho/rain 1.mp3") and abs(mp3["duration"] - 1.0) < 0.1
    # One manifest per Foundation task, its datasets together (Sound_AQA: clothoaqa and avqa).
    sound_aqa = _lines(tmp_path / "out" / "eval" / "airbench_foundation_sound_aqa.jsonl")
    assert sound_aqa[0] == {
        "id": "airbench-foundation-10",
        "audio": {"path": str(source / "Foundation/Sound_AQA_clothoaqa/q10.wav"), "duration": 0.75},
        "task": "choice",
        "prompt": "Choose the most suitable answer from options A, B, C, and D to respond the question in next "
        "line, you may only choose A or B or C or D.\nQuestion 10?\nA. rain\nB. a dog\nC. birds\nD. a car",
        "text": "C",
    }
    assert [r["id"] for r in sound_aqa] == ["airbench-foundation-10", "airbench-foundation-14"]
    assert sound_aqa[1]["prompt"].startswith("Choose the most suitable answer from options A, B, and C to")
    assert sound_aqa[1]["text"] == "A"
    (grounding,) = _lines(tmp_path / "out" / "eval" / "airbench_foundation_audio_grounding.jsonl")
    assert grounding["audio"]["path"] == str(source / "Foundation/Audio_Grounding_AudioGrounding/g11.flac")
    assert grounding["prompt"].startswith("Choose the most suitable answer from options A and B to respond")
    assert grounding["prompt"].endswith(
        "you may only choose A or B.\nQuestion 11?\nA. [0.0, 1.5]\nB. [2.0, 3.0]"
    )
    assert grounding["text"] == "B" and grounding["task"] == "choice"
    assert sorted(p.name for p in (tmp_path / "out" / "eval").iterdir()) == [
        "airbench_chat.jsonl",
        "airbench_foundation_audio_grounding.jsonl",
        "airbench_foundation_sound_aqa.jsonl",
    ]
    assert summary["skipped"] == {
        "chat/missing_audio": 1,
        "chat/incomplete_entry": 1,
        "chat/duplicate_id": 1,
        "foundation/missing_audio": 1,
        "foundation/incomplete_entry": 0,
        "foundation/answer_not_a_choice": 1,
        "foundation/duplicate_id": 0,
    }
    assert summary["pretrain"] == {} and "sft" not in summary
    assert {name: s["examples"] for name, s in summary["eval"].items()} == {
        "airbench_foundation_audio_grounding": 1,
        "airbench_foundation_sound_aqa": 2,
        "airbench_chat": 2,
    }


def test_foundation_set_names_follow_airbench_task_names():
    assert airbench.foundation_set_name("Speech_Grounding") == "airbench_foundation_speech_grounding"
    assert airbench.foundation_set_name("vocal_sound_classification") == (
        "airbench_foundation_vocal_sound_classification"
    )
    assert airbench.foundation_set_name("Music_Midi_Pitch Analysis!") == (
        "airbench_foundation_music_midi_pitch_analysis"
    )


def test_the_cli_output_is_what_evaluation_reads_and_scores(tmp_path):
    source = build_airbench(tmp_path / "AIR-Bench-Dataset").resolve()
    out = tmp_path / "out"
    command = [
        sys.executable,
        "scripts/prepare_data.py",
        "recipe=airbench",
        f"source_dir={source}",
        f"output_dir={out}",
    ]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    chat_path = out / "eval" / "airbench_chat.jsonl"
    grounding_path, sound_path = (
        out / "eval" / f"airbench_foundation_{task}.jsonl" for task in ("audio_grounding", "sound_aqa")
    )
    assert [manifest_kind(str(p)) for p in (chat_path, grounding_path, sound_path)] == [
        "sft",
        "pretrain",
        "pretrain",
    ]
    chat = ManifestDataset.from_manifest(str(chat_path), "sft")[1]  # the MP3, decoded to 16 kHz
    wave = chat["messages"][0]["content"][0]["waveform"]
    assert abs(len(wave) - RATE) < 0.1 * RATE and np.abs(wave).max() > 0.1
    grounding = ManifestDataset.from_manifest(str(grounding_path), "pretrain")[0]  # the FLAC
    assert grounding["messages"][0]["content"][0]["waveform"].shape == (8000,)
    assert grounding["messages"][1]["content"][0]["text"] == "B"
    # Scored as evaluation does: each item keeps its task and the manifest it came from.
    predictions = {
        "airbench-foundation-10": "c.",
        "airbench-foundation-14": "B",
        "airbench-foundation-11": "B",
    }
    items = [
        {"task": r["task"], "manifest": str(path), "reference": r["text"], "prediction": predictions[r["id"]]}
        for path in (sound_path, grounding_path)
        for r in read_manifest_records(path, "pretrain")
    ]
    assert score_generations(items) == {
        "choice/exact_match": pytest.approx(2 / 3),
        "choice/n": 3,
        "choice/airbench_foundation_audio_grounding/exact_match": 1.0,
        "choice/airbench_foundation_audio_grounding/n": 1,
        "choice/airbench_foundation_sound_aqa/exact_match": 0.5,
        "choice/airbench_foundation_sound_aqa/n": 2,
    }


def test_one_track_is_enough_and_neither_is_an_error(tmp_path):
    source = build_airbench(tmp_path / "AIR-Bench-Dataset")
    (source / "Foundation" / "Foundation_meta.json").unlink()
    summary = airbench.prepare(_config(source), tmp_path / "out")
    assert list(summary["eval"]) == ["airbench_chat"]
    assert not list((tmp_path / "out" / "eval").glob("airbench_foundation*"))
    assert set(summary["skipped"]) == {"chat/missing_audio", "chat/incomplete_entry", "chat/duplicate_id"}
    (source / "Chat" / "Chat_meta.json").unlink()
    with pytest.raises(CorpusLayoutError, match="Chat/Chat_meta.json"):
        airbench.prepare(_config(source), tmp_path / "out2")


def test_a_meta_file_that_is_not_a_list_of_entries_is_refused(tmp_path):
    source = build_airbench(tmp_path / "AIR-Bench-Dataset")
    (source / "Chat" / "Chat_meta.json").write_text(json.dumps({"path": "568.38_596.46.wav"}))
    with pytest.raises(CorpusLayoutError, match="expected a JSON list of objects"):
        airbench.prepare(_config(source), tmp_path / "out")


def test_a_track_without_a_usable_entry_writes_no_manifest(tmp_path):
    source = build_airbench(tmp_path / "AIR-Bench-Dataset")
    (source / "Foundation" / "Foundation_meta.json").write_text(json.dumps(FOUNDATION[2:4]))
    summary = airbench.prepare(_config(source), tmp_path / "out")
    assert list(summary["eval"]) == ["airbench_chat"]
    assert not list((tmp_path / "out" / "eval").glob("airbench_foundation*"))
    assert (
        summary["skipped"]["foundation/answer_not_a_choice"],
        summary["skipped"]["foundation/missing_audio"],
    ) == (1, 1)
