"""The open language set (lalm.data.languages)."""

from __future__ import annotations

import pytest

from lalm.data.languages import (
    UnknownLanguageError,
    base_language,
    check_language,
    language_name,
    uses_characters,
)


@pytest.mark.parametrize(
    ("code", "standard"),
    [("en", "en"), ("eng", "en"), ("yue", "yue"), ("ZH-cn", "zh-CN"), ("pt-BR", "pt-BR"), ("cmn", "cmn")],
)
def test_any_iso_639_code_in_standard_form(code: str, standard: str) -> None:
    assert check_language(code) == standard


@pytest.mark.parametrize("code", ["english", "xx", "und", "qaa", "", "en_US!", None, 3])
def test_not_a_language(code: object) -> None:
    with pytest.raises(UnknownLanguageError, match="ISO 639"):
        check_language(code)  # type: ignore[arg-type]


def test_base_language_and_units() -> None:
    assert base_language("zh-TW") == "zh" and base_language("eng") == "en"
    assert [uses_characters(c) for c in ("zh-CN", "yue", "ja", "ko", "th", "en", "cy")] == [
        True,
        True,
        True,
        True,
        True,
        False,
        False,
    ]


def test_names_in_both_prompt_languages() -> None:
    assert (language_name("sw"), language_name("sw", "zh")) == ("Swahili", "斯瓦希里语")
    assert (language_name("zh"), language_name("zh", "zh")) == ("Chinese", "中文")  # pinned
