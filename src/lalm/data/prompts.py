"""Natural-language instruction prompts for audio-language-model pretraining.

Qwen-Audio conditioned its decoder on a hierarchy of task tags (``<|transcribe|><|en|>`` and so on).
The Qwen2-Audio report (arXiv 2407.10759) replaced those tags with plain natural-language instructions:
the model sees the same kind of text it will later receive from users, the task vocabulary is no longer
a fixed token inventory, and varied phrasings keep the model from latching onto one surface form.

This module holds a small library of such instructions, in English and Simplified Chinese, for each
pretraining task, and a deterministic selector.  Selection hashes ``f"{seed}:{task}:{key}"`` with
SHA-256 (never Python's salted ``hash()``), so a given example receives the same prompt in every process
and every run, while different examples spread over the whole library.

Templates may contain only two placeholders: ``{language}`` (language of the speech) and
``{target_language}`` (language to translate into).  Both are filled with the language's name written in
the prompt's own language, e.g. "French" in an English prompt and "法语" in a Chinese one.
"""

from __future__ import annotations

import hashlib
from string import Formatter

from lalm.data.prompt_texts import PROMPTS

TASKS: tuple[str, ...] = ("asr", "s2tt", "lid", "gender", "style", "sound", "caption", "count")
PROMPT_LANGUAGES: tuple[str, ...] = ("en", "zh")
LANGUAGE_CODES: tuple[str, ...] = ("en", "zh", "yue", "fr", "it", "es", "de", "ja")

PLACEHOLDERS: frozenset[str] = frozenset({"language", "target_language"})

LANGUAGE_NAMES: dict[str, dict[str, str]] = {
    "en": {"en": "English", "zh": "英语"},
    "zh": {"en": "Chinese", "zh": "中文"},
    "yue": {"en": "Cantonese", "zh": "粤语"},
    "fr": {"en": "French", "zh": "法语"},
    "it": {"en": "Italian", "zh": "意大利语"},
    "es": {"en": "Spanish", "zh": "西班牙语"},
    "de": {"en": "German", "zh": "德语"},
    "ja": {"en": "Japanese", "zh": "日语"},
}


class UnknownTaskError(ValueError):
    """Raised when a task name is not one of :data:`TASKS`."""

    def __init__(self, task: str) -> None:
        super().__init__(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
        self.task = task


def placeholders(template: str) -> frozenset[str]:
    """Return the names of the ``{...}`` fields used in ``template``."""
    return frozenset(name for _, name, _, _ in Formatter().parse(template) if name is not None)


def language_name(code: str, prompt_language: str = "en") -> str:
    """Name of language ``code`` written in ``prompt_language`` (e.g. ``("fr", "zh") -> "法语"``)."""
    if code not in LANGUAGE_NAMES:
        raise ValueError(f"unknown language code {code!r}; expected one of {', '.join(LANGUAGE_CODES)}")
    _check_prompt_language(prompt_language)
    return LANGUAGE_NAMES[code][prompt_language]


def _check_prompt_language(prompt_language: str) -> None:
    if prompt_language not in PROMPT_LANGUAGES:
        raise ValueError(
            f"unknown prompt language {prompt_language!r}; expected one of {', '.join(PROMPT_LANGUAGES)}"
        )


def _digest(task: str, seed: int, key: str) -> bytes:
    return hashlib.sha256(f"{seed}:{task}:{key}".encode()).digest()


def _pick(digest: bytes, offset: int, n: int) -> int:
    """Index in ``range(n)`` taken from 8 bytes of ``digest`` starting at ``offset``."""
    return int.from_bytes(digest[offset : offset + 8], "big") % n


def _usable(templates: tuple[str, ...], available: frozenset[str], task: str) -> tuple[str, ...]:
    """Templates whose placeholders can all be filled; ValueError when none can."""
    usable = tuple(t for t in templates if placeholders(t) <= available)
    if not usable:
        needed = sorted(set().union(*(placeholders(t) for t in templates)) - available)
        raise ValueError(f"task {task!r} needs {' and '.join(needed)} but it was not given")
    return usable


def select_prompt(
    task: str,
    *,
    seed: int,
    key: str,
    language: str | None = None,
    target_language: str | None = None,
    prompt_language: str | None = None,
) -> str:
    """Pick an instruction for ``task`` deterministically from ``(seed, task, key)``.

    ``prompt_language`` is drawn from the same SHA-256 digest when None.  ``{language}`` and
    ``{target_language}`` are filled with :func:`language_name` in the prompt language.  Templates whose
    placeholder has no value are skipped (an ASR example without ``language`` gets a language-free
    prompt); ValueError is raised only when no template of the task can be filled (s2tt without
    ``target_language``).  Given language codes are always validated, so an unknown code fails for
    every key, not only for keys that land on a template using it.
    """
    if task not in PROMPTS:
        raise UnknownTaskError(task)
    digest = _digest(task, seed, key)
    if prompt_language is None:
        prompt_language = PROMPT_LANGUAGES[_pick(digest, 0, len(PROMPT_LANGUAGES))]
    _check_prompt_language(prompt_language)
    values = {
        name: language_name(code, prompt_language)
        for name, code in (("language", language), ("target_language", target_language))
        if code is not None
    }
    candidates = _usable(PROMPTS[task][prompt_language], frozenset(values), task)
    template = candidates[_pick(digest, 8, len(candidates))]
    return template.format(**values)
