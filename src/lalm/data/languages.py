"""The open language set: any ISO 639 code (or a BCP 47 tag built on one) names a language.

Manifests, prompts and metrics all go through this module, so a corpus in a language lalm has never
seen (CoVoST 2's Welsh, FLEURS's 102 languages) loads, gets prompts naming its language, and is scored.
langcodes (with its `language_data` tables, from CLDR) validates tags and names languages in English
and Chinese; what is written here is only lalm's policy on top of it: which tags are accepted, which
form is stored, and which languages are scored by characters.
"""

from __future__ import annotations

from functools import lru_cache

import langcodes

# Scored by characters (CER), not words: written without spaces between words (zh, yue, ja, th) or,
# for ko, where the Qwen2-Audio/Whisper evaluations also count characters.
CER_LANGUAGES: tuple[str, ...] = ("zh", "yue", "ja", "ko", "th")

# The names prompts and language-ID answers use for the languages the synthetic corpus speaks; they
# equal langcodes' CLDR names, pinned here so that a langcodes update cannot change an answer the
# model was trained to give.
PINNED_NAMES: dict[str, dict[str, str]] = {
    "en": {"en": "English", "zh": "英语"},
    "zh": {"en": "Chinese", "zh": "中文"},
    "yue": {"en": "Cantonese", "zh": "粤语"},
    "fr": {"en": "French", "zh": "法语"},
    "it": {"en": "Italian", "zh": "意大利语"},
    "es": {"en": "Spanish", "zh": "西班牙语"},
    "de": {"en": "German", "zh": "德语"},
    "ja": {"en": "Japanese", "zh": "日语"},
}


class UnknownLanguageError(ValueError):
    """A tag that is not an ISO 639 language code (or a valid BCP 47 tag built on one)."""

    def __init__(self, code: object) -> None:
        super().__init__(
            f"unknown language {code!r}: expected an ISO 639 code such as 'en', 'yue' or 'cmn', "
            "optionally with a region or script as in BCP 47 ('zh-CN', 'pt-BR')"
        )
        self.code = code


def check_language(code: str) -> str:
    """The standard form of a language tag ('eng' -> 'en', 'ZH-cn' -> 'zh-CN'); UnknownLanguageError
    when it is not one. 'und' (undetermined) and private-use codes are refused: a record must say which
    language it holds."""
    if not isinstance(code, str):  # checked before the cache: a manifest may hold a list or a dict here
        raise UnknownLanguageError(code)
    return _standard_tag(code)


@lru_cache(maxsize=4096)
def _standard_tag(code: str) -> str:
    if not langcodes.tag_is_valid(code):
        raise UnknownLanguageError(code)
    tag = langcodes.standardize_tag(code)
    language = langcodes.Language.get(tag).language
    if language is None or language == "und" or language.startswith("q"):  # qaa-qtz: private use
        raise UnknownLanguageError(code)
    return tag


def base_language(code: str) -> str:
    """The language subtag of a tag: 'zh-CN' -> 'zh', 'en' -> 'en'. Normalisers and units go by it."""
    return langcodes.Language.get(check_language(code)).language or code


def uses_characters(code: str) -> bool:
    """Whether text in this language is scored by characters (CER) rather than words (WER)."""
    return base_language(code) in CER_LANGUAGES


@lru_cache(maxsize=4096)
def language_name(code: str, prompt_language: str = "en") -> str:
    """The language's name written in `prompt_language`: ("fr", "zh") -> "法语", ("cy", "en") ->
    "Welsh". Regions and scripts are left out ('zh-TW' -> "Chinese"): a prompt names the language."""
    base = base_language(code)
    pinned = PINNED_NAMES.get(base, {}).get(prompt_language)
    if pinned is not None:
        return pinned
    return str(langcodes.Language.get(base).display_name(check_language(prompt_language)))
