"""Tests for the natural-language prompt library."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lalm.data.languages import PINNED_NAMES
from lalm.data.prompts import (
    PROMPT_LANGUAGES,
    UnknownTaskError,
    language_name,
    placeholders,
    select_prompt,
)
from lalm.data.tasks import get_task, task_names

# Every registered task with a prompt library (chat has none: its records carry their own turns).
TASKS = tuple(name for name in task_names() if get_task(name).prompts)
PROMPTS = {name: get_task(name).prompts for name in TASKS}

SRC = Path(__file__).resolve().parents[3] / "src"
CJK = re.compile(r"[\u4e00-\u9fff]")
FIELD = re.compile(r"\{([^{}]*)\}")


def test_every_task_and_prompt_language_present() -> None:
    assert set(PROMPTS) == set(TASKS)
    for task in TASKS:
        assert set(PROMPTS[task]) == set(PROMPT_LANGUAGES)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("prompt_language", PROMPT_LANGUAGES)
def test_at_least_twenty_distinct_prompts(task: str, prompt_language: str) -> None:
    prompts = PROMPTS[task][prompt_language]
    assert len(set(prompts)) >= 20
    for prompt in prompts:
        assert prompt.strip() == prompt and prompt
        assert "\n" not in prompt and len(prompt) < 120


@pytest.mark.parametrize("task", TASKS)
def test_chinese_prompts_are_chinese(task: str) -> None:
    for prompt in PROMPTS[task]["zh"]:
        assert CJK.search(prompt), prompt
    for prompt in PROMPTS[task]["en"]:
        assert not CJK.search(prompt), prompt


@pytest.mark.parametrize("prompt_language", PROMPT_LANGUAGES)
def test_s2tt_prompts_all_need_target_language(prompt_language: str) -> None:
    for prompt in PROMPTS["s2tt"][prompt_language]:
        assert "{target_language}" in prompt, prompt


@pytest.mark.parametrize("prompt_language", PROMPT_LANGUAGES)
def test_asr_mixes_language_and_plain_templates(prompt_language: str) -> None:
    with_language = [p for p in PROMPTS["asr"][prompt_language] if "{language}" in p]
    n = len(PROMPTS["asr"][prompt_language])
    assert n // 4 <= len(with_language) <= 3 * n // 4


def test_only_known_placeholders() -> None:
    for task in TASKS:
        for prompt_language in PROMPT_LANGUAGES:
            for prompt in PROMPTS[task][prompt_language]:
                assert set(FIELD.findall(prompt)) <= {"language", "target_language"}, prompt
                assert placeholders(prompt) <= {"language", "target_language"}, prompt
                stripped = prompt.replace("{language}", "").replace("{target_language}", "")
                assert "{" not in stripped and "}" not in stripped, prompt
                if task not in ("asr", "s2tt"):
                    assert placeholders(prompt) == frozenset(), prompt


def test_language_names() -> None:
    for code, names in PINNED_NAMES.items():
        assert [language_name(code, p) for p in ("en", "zh")] == [names["en"], names["zh"]]
    assert language_name("fr") == "French"
    assert language_name("fr", "zh") == "法语"
    assert language_name("yue", "en") == "Cantonese"
    assert language_name("yue", "zh") == "粤语"
    assert language_name("ja", "zh") == "日语"
    # Any ISO 639 code is named, in both prompt languages; a region does not change the name.
    assert language_name("cy") == "Welsh" and language_name("cy", "zh") == "威尔士语"
    assert language_name("zh-TW") == "Chinese" and language_name("eng", "zh") == "英语"
    with pytest.raises(ValueError, match="xx"):
        language_name("xx")


def test_select_prompt_is_deterministic_in_process() -> None:
    kwargs = {"seed": 7, "key": "utt-0001", "language": "de", "target_language": "en"}
    for task in TASKS:
        assert select_prompt(task, **kwargs) == select_prompt(task, **kwargs)


def test_select_prompt_is_deterministic_across_processes() -> None:
    code = (
        "from lalm.data.prompts import select_prompt\n"
        f"for i in range(20):\n"
        f"    for t in {TASKS!r}:\n"
        "        print(select_prompt(t, seed=3, key=f'k{i}', language='fr', target_language='zh'))\n"
    )
    expected = "".join(
        select_prompt(t, seed=3, key=f"k{i}", language="fr", target_language="zh") + "\n"
        for i in range(20)
        for t in TASKS
    )
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONHASHSEED": hash_seed, "PYTHONIOENCODING": "utf-8"}
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, encoding="utf-8", env=env, check=True
        )
        assert result.stdout == expected


def test_select_prompt_known_value() -> None:
    # Pins the hashing scheme: sha256("0:asr:a"), prompt language from bytes 0-8, template from 8-16.
    assert select_prompt("asr", seed=0, key="a", language="fr") == "Convert this speech to text."


def test_keys_spread_over_prompts() -> None:
    asr = {select_prompt("asr", seed=0, key=f"key-{i}", language="en") for i in range(200)}
    assert len(asr) >= 15
    langs = {
        "zh" if CJK.search(select_prompt("gender", seed=0, key=f"key-{i}")) else "en" for i in range(200)
    }
    assert langs == {"en", "zh"}


def test_seed_changes_selection() -> None:
    a = [select_prompt("caption", seed=0, key=f"k{i}") for i in range(50)]
    b = [select_prompt("caption", seed=1, key=f"k{i}") for i in range(50)]
    assert a != b


def test_chinese_prompt_is_filled() -> None:
    for i in range(50):
        prompt = select_prompt(
            "s2tt", seed=1, key=f"k{i}", language="fr", target_language="ja", prompt_language="zh"
        )
        assert CJK.search(prompt) and "{" not in prompt and "}" not in prompt
        assert "日语" in prompt
        asr = select_prompt("asr", seed=1, key=f"k{i}", language="yue", prompt_language="zh")
        assert CJK.search(asr) and "{" not in asr


def test_english_prompt_is_filled() -> None:
    prompts = {
        select_prompt("s2tt", seed=2, key=f"k{i}", language="es", target_language="de", prompt_language="en")
        for i in range(100)
    }
    assert all("German" in p and "{" not in p for p in prompts)
    assert any("Spanish" in p for p in prompts)


def test_asr_without_language_uses_plain_templates() -> None:
    for i in range(100):
        prompt = select_prompt("asr", seed=0, key=f"k{i}")
        assert "{" not in prompt
        assert prompt in PROMPTS["asr"]["en"] or prompt in PROMPTS["asr"]["zh"]


def test_unknown_task_raises() -> None:
    with pytest.raises(UnknownTaskError, match="translate_all") as info:
        select_prompt("translate_all", seed=0, key="x")
    assert isinstance(info.value, ValueError)
    assert "asr" in str(info.value) and "count" in str(info.value)
    with pytest.raises(UnknownTaskError, match="did you mean 'emotion'"):
        select_prompt("emotoin", seed=0, key="x")


def test_task_without_prompt_library_raises() -> None:
    with pytest.raises(ValueError, match="its records must bring their own 'prompt'"):
        select_prompt("chat", seed=0, key="x")


def test_any_iso_639_language_fills_prompts() -> None:
    prompts = {
        select_prompt("s2tt", seed=0, key=f"k{i}", language="cy", target_language="sw", prompt_language="en")
        for i in range(40)
    }
    assert all("Swahili" in p for p in prompts) and any("Welsh" in p for p in prompts)
    zh = select_prompt("s2tt", seed=0, key="k", language="cy", target_language="sw", prompt_language="zh")
    assert "斯瓦希里语" in zh


def test_s2tt_without_target_language_raises() -> None:
    for i in range(20):
        with pytest.raises(ValueError, match="target_language"):
            select_prompt("s2tt", seed=0, key=f"k{i}", language="en")


def test_bad_codes_raise() -> None:
    with pytest.raises(ValueError, match="klingon"):
        select_prompt("asr", seed=0, key="x", language="klingon")
    with pytest.raises(ValueError, match="fr"):
        select_prompt("lid", seed=0, key="x", prompt_language="fr")
