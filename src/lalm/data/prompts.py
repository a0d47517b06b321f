"""Natural-language instruction prompts for audio-language-model pretraining.

Qwen-Audio conditioned its decoder on a hierarchy of task tags (``<|transcribe|><|en|>`` and so on).
The Qwen2-Audio report (arXiv 2407.10759) replaced those tags with plain natural-language instructions:
the model sees the same kind of text it will later receive from users, the task vocabulary is no longer
a fixed token inventory, and varied phrasings keep the model from latching onto one surface form.

Each task's instructions, in English and Simplified Chinese, live with the task in the registry
(lalm.data.tasks); this module holds the deterministic selector.  Selection hashes ``f"{seed}:{task}:{key}"`` with
SHA-256 (never Python's salted ``hash()``), so a given example receives the same prompt in every process
and every run, while different examples spread over the whole library.

Templates may contain only two placeholders: ``{language}`` (language of the speech) and
``{target_language}`` (language to translate into).  Both are filled with the language's name written in
the prompt's own language, e.g. "French" in an English prompt and "法语" in a Chinese one.
"""

from __future__ import annotations

import hashlib
from string import Formatter

from lalm.data.languages import language_name
from lalm.data.tasks import PROMPT_LANGUAGES, UnknownTaskError, get_task

PLACEHOLDERS: frozenset[str] = frozenset({"language", "target_language"})

__all__ = ["PROMPT_LANGUAGES", "UnknownTaskError", "language_name", "placeholders", "select_prompt"]


def placeholders(template: str) -> frozenset[str]:
    """Return the names of the ``{...}`` fields used in ``template``."""
    return frozenset(name for _, name, _, _ in Formatter().parse(template) if name is not None)


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
    templates = get_task(task).prompts
    if not templates:
        raise ValueError(f"task {task!r} has no prompt library: its records must bring their own 'prompt'")
    digest = _digest(task, seed, key)
    if prompt_language is None:
        prompt_language = PROMPT_LANGUAGES[_pick(digest, 0, len(PROMPT_LANGUAGES))]
    _check_prompt_language(prompt_language)
    values = {
        name: language_name(code, prompt_language)
        for name, code in (("language", language), ("target_language", target_language))
        if code is not None
    }
    candidates = _usable(templates[prompt_language], frozenset(values), task)
    template = candidates[_pick(digest, 8, len(candidates))]
    return template.format(**values)
