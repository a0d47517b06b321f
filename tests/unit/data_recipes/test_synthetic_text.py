"""Tests for the template-based multilingual sentence bank."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[3]))

from data_recipes import synthetic_text as st  # noqa: E402

ALL_KEYS = st.statement_keys() + st.question_keys()
CJK = re.compile(r"[\u4e00-\u9fff]")


def test_key_counts() -> None:
    assert len(st.statement_keys()) >= 400
    assert len(st.question_keys()) >= 100
    assert len(set(ALL_KEYS)) == len(ALL_KEYS)


@pytest.mark.parametrize("language", st.LANGUAGES)
def test_every_key_renders(language: str) -> None:
    for key in ALL_KEYS:
        sentence = st.render(key, language)
        assert sentence.key == key and sentence.language == language
        assert sentence.family == key.split(":")[0]
        assert sentence.text.strip()


def test_japanese_is_kana_only() -> None:
    for key in ALL_KEYS:
        texts = [st.render(key, "ja").text]
        if key in st.question_keys():
            texts.append(st.answer(key, "ja"))
        for text in texts:
            assert not CJK.search(text), text


@pytest.mark.parametrize("language", ["zh", "yue"])
def test_chinese_contains_hanzi(language: str) -> None:
    for key in ALL_KEYS:
        assert CJK.search(st.render(key, language).text)


@pytest.mark.parametrize("language", st.LANGUAGES)
def test_distinct_keys_give_distinct_texts(language: str) -> None:
    seen: dict[str, str] = {}
    collisions = []
    for key in ALL_KEYS:
        text = st.render(key, language).text
        if text in seen:
            collisions.append((seen[text], key, text))
        seen[text] = key
    for collision in collisions:
        print("collision:", collision)
    assert not collisions


@pytest.mark.parametrize("language", st.LANGUAGES)
def test_corrupt_differs_and_is_deterministic(language: str) -> None:
    for key in st.statement_keys():
        original = st.render(key, language).text
        for seed in range(2):
            changed = st.corrupt(key, language, seed)
            assert changed != original
            assert changed == st.corrupt(key, language, seed)


def test_corrupt_keeps_to_the_allowed_meanings() -> None:
    key = "trip:anna:market:mon"
    only_days = st.corrupt(key, "en", 0, allowed=lambda k: k.startswith("trip:anna:market:"))
    assert only_days.startswith("Anna goes to the market on ") and only_days != st.render(key, "en").text
    # Without `allowed` the draw is unchanged: the first slot drawn, then a value of it.
    assert st.corrupt(key, "en", 3) == st.corrupt(key, "en", 3, allowed=lambda k: True)
    with pytest.raises(ValueError, match="no one-word change"):
        st.corrupt(key, "en", 0, allowed=lambda k: False)


def test_known_values() -> None:
    assert "seven" in st.answer("sum:3:4", "en").lower()
    assert st.number_word(17, "fr") == "dix-sept"
    assert st.number_word(20, "ja") == "にじゅう"
    assert st.number_word(13, "zh") == "十三"
    assert st.answer("next_day:sun", "en") == "The day after Sunday is Monday."


def test_errors() -> None:
    with pytest.raises(ValueError):
        st.render("trip:anna:market:mon", "xx")
    with pytest.raises(ValueError):
        st.number_word(3, "xx")
    with pytest.raises(ValueError):
        st.render("nope:1", "en")
    with pytest.raises(ValueError):
        st.render("trip:anna:moon:mon", "en")
    with pytest.raises(ValueError):
        st.answer("trip:anna:market:mon", "en")
    with pytest.raises(ValueError):
        st.corrupt("sum:1:2", "en", 0)
