"""The task registry: built-in tasks, registering a new one, and what every part reads from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lalm.data import tasks as task_module
from lalm.data.manifest import read_manifest_records
from lalm.data.prompts import select_prompt
from lalm.data.tasks import Task, UnknownTaskError, get_task, register_task, task_names
from lalm.eval.scoring import score_generations


def test_built_in_tasks_and_their_metrics() -> None:
    metrics = {name: get_task(name).metric for name in task_names()}
    assert {k: metrics[k] for k in ("asr", "s2tt", "lid", "caption", "chat", "emotion", "vocal_sound")} == {
        "asr": "wer",
        "s2tt": "bleu",
        "lid": "accuracy",
        "caption": "bleu",
        "chat": "exact",
        "emotion": "accuracy",
        "vocal_sound": "accuracy",
    }
    assert get_task("asr").needs_language and not get_task("asr").needs_target_language
    assert get_task("s2tt").needs_target_language


def test_registering_twice_is_refused_and_bad_specs_fail() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_task(Task("asr", "wer", "again"))
    with pytest.raises(ValueError, match="metric must be one of"):
        Task("x", "rouge", "unknown metric")
    with pytest.raises(ValueError, match="unknown prompt languages"):
        Task("x", "accuracy", "prompts in French", {"fr": ("Quoi ?",)})


def test_unknown_task_suggests_the_close_name() -> None:
    with pytest.raises(UnknownTaskError, match="did you mean 'vocal_sound'"):
        get_task("vocal_sounds")


@pytest.fixture
def genre_task():
    """A task registered by a test, removed afterwards (the registry is process-wide)."""
    task = register_task(
        Task("speaker_count", "accuracy", "how many speakers", {"en": ("How many people speak?",)})
    )
    yield task
    del task_module._REGISTRY[task.name]


def test_a_new_task_is_one_registration(genre_task: Task, tmp_path: Path) -> None:
    # Manifest validation, the prompt library and scoring all pick it up.
    (tmp_path / "a.wav").write_bytes(b"")
    line = {"id": "1", "audio": "a.wav", "task": "speaker_count", "text": "two", "prompt_language": "en"}
    (tmp_path / "m.jsonl").write_text(json.dumps(line) + "\n")
    record = read_manifest_records(tmp_path / "m.jsonl", "pretrain", check_files=False)[0]
    assert record["task"] == "speaker_count"
    assert select_prompt("speaker_count", seed=0, key="1", prompt_language="en") == "How many people speak?"
    items = [
        {"task": "speaker_count", "language": None, "target_language": None, "reference": r, "prediction": p}
        for r, p in (("two", "There are two."), ("three", "two"), ("two", "two"))
    ]
    assert score_generations(items) == {"speaker_count/accuracy": pytest.approx(2 / 3), "speaker_count/n": 3}


def test_scoring_new_corpus_tasks_and_open_languages() -> None:
    items = [
        {"task": "emotion", "reference": "joy", "prediction": "The speaker sounds full of joy."},
        {"task": "emotion", "reference": "anger", "prediction": "sadness"},
        {"task": "lid", "language": "cy", "reference": "Welsh", "prediction": "威尔士语"},
        {"task": "lid", "language": "en", "reference": "English", "prediction": "French"},
        {"task": "asr", "language": "cy", "reference": "bore da", "prediction": "bore da"},
        {"task": "asr", "language": "ko", "reference": "안녕 하세요", "prediction": "안녕하세요"},
        {
            "task": "s2tt",
            "language": "en",
            "target_language": "cy",
            "reference": "a b c d",
            "prediction": "a b c d",
        },
        {"task": "my_label", "reference": "x", "prediction": "y"},
    ]
    metrics = score_generations([{"language": None, "target_language": None, **i} for i in items])
    assert metrics["emotion/accuracy"] == 0.5 and metrics["lid/accuracy"] == 0.5
    assert metrics["asr/cy/wer"] == 0.0 and metrics["asr/ko/cer"] == 0.0
    assert metrics["s2tt/en-cy/bleu"] == pytest.approx(100.0)
    assert metrics["unscored/my_label/n"] == 1  # an SFT record's own label: counted, not scored
