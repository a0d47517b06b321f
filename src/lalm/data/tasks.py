"""The task registry: what each task asks, which prompts ask it, and how its answers are scored.

A task is registered once, with its instruction prompts and its scoring rule, and every part of lalm
reads it from here: manifest validation (is the task known, does it need `language` or
`target_language`), the prompt library (lalm.data.prompts), task weights, and evaluation (which metric,
how results are grouped, which answers count as the same label). A corpus that brings a new task
(speech emotion, vocal sounds, music genre) adds one `register_task(Task(...))`; see
lalm.data.task_library for the built-in ones beyond the synthetic corpus's eight.

Metrics:
    wer       error rate per language: WER, or CER for languages written without spaces
              (lalm.data.languages.CER_LANGUAGES), after the language's normaliser (lalm.eval.metrics)
    bleu      corpus BLEU per group (`group_by`), tokenised for the group's output language
    accuracy  a free-text answer mapped to a label (lalm.eval.metrics.map_to_label), then accuracy
    exact     exact match after normalisation (chat with one right answer; open chat goes to a judge)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Any

from lalm.data.languages import PINNED_NAMES, check_language, language_name
from lalm.data.prompt_texts import PROMPTS

METRICS = ("wer", "bleu", "accuracy", "exact")
# How a text task's results are grouped: by the speech's language (asr), by language pair (s2tt),
# or by the answer's language (caption: `target_language`, else English).
GROUPINGS = ("language", "language_pair", "target_language")
PROMPT_LANGUAGES: tuple[str, ...] = ("en", "zh")

Item = dict[str, Any]
LabelRule = Callable[[list[Item]], dict[str, list[str]]]


def distinct_answers(items: list[Item]) -> dict[str, list[str]]:
    """The default label rule: each distinct reference answer is a label, matched by itself."""
    return {ref: [ref] for ref in sorted({item["reference"] for item in items})}


def language_labels(items: list[Item]) -> dict[str, list[str]]:
    """Language ID: a language is one label whatever the prompt language ("French" and "法语" both mean
    fr). The labels are the languages of the items plus the synthetic corpus's eight, so that naming a
    wrong but well-known language is wrong rather than unmatched."""
    codes = {item["language"].split("-")[0] for item in items if item.get("language")} | set(PINNED_NAMES)
    return {code: sorted({language_name(code, p) for p in PROMPT_LANGUAGES}) for code in sorted(codes)}


@dataclass(frozen=True)
class Task:
    """One task. `prompts`: prompt language -> instruction templates (placeholders {language} and
    {target_language} only); a task without prompts needs every record to bring its own `prompt`."""

    name: str
    metric: str
    description: str
    prompts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    needs_language: bool = False
    needs_target_language: bool = False
    group_by: str = "language"
    labels: LabelRule = distinct_answers

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"task {self.name!r}: metric must be one of {METRICS}, got {self.metric!r}")
        if self.group_by not in GROUPINGS:
            raise ValueError(
                f"task {self.name!r}: group_by must be one of {GROUPINGS}, got {self.group_by!r}"
            )
        unknown = set(self.prompts) - set(PROMPT_LANGUAGES)
        if unknown:
            raise ValueError(f"task {self.name!r}: prompts in unknown prompt languages {sorted(unknown)}")

    def group_key(self, item: Item) -> str:
        """The group a scored item falls in (metric names carry it: asr/en/wer, s2tt/en-de/bleu)."""
        if self.group_by == "language_pair":
            return f"{item['language']}-{item['target_language']}"
        if self.group_by == "target_language":
            return item.get("target_language") or "en"
        return item["language"]


_REGISTRY: dict[str, Task] = {}


class UnknownTaskError(ValueError):
    """A task name that no `register_task` call registered."""

    def __init__(self, task: object) -> None:
        names = task_names()
        close = get_close_matches(str(task), names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        super().__init__(f"unknown task {task!r}{hint}; registered tasks: {', '.join(names)}")
        self.task = task


def register_task(task: Task, *, replace: bool = False) -> Task:
    """Add a task to the registry; registering a name twice is an error unless `replace`."""
    if task.name in _REGISTRY and not replace:
        raise ValueError(f"task {task.name!r} is already registered")
    _REGISTRY[task.name] = task
    return task


def get_task(name: str) -> Task:
    if name not in _REGISTRY:
        raise UnknownTaskError(name)
    return _REGISTRY[name]


def task_names() -> tuple[str, ...]:
    """Every registered task, in registration order."""
    return tuple(_REGISTRY)


def check_record_languages(task: Task, language: str | None, target_language: str | None) -> None:
    """ValueError when a record lacks a language its task needs; codes are checked as well."""
    for field_name, code, needed in (
        ("language", language, task.needs_language),
        ("target_language", target_language, task.needs_target_language),
    ):
        if code is None and needed:
            raise ValueError(f"task {task.name!r} needs field '{field_name}'")
        if code is not None:
            check_language(code)


# The synthetic corpus's tasks, with the prompt library of lalm.data.prompt_texts.
_BUILT_IN = (
    Task("asr", "wer", "speech recognition", PROMPTS["asr"], needs_language=True),
    Task(
        "s2tt",
        "bleu",
        "speech-to-text translation",
        PROMPTS["s2tt"],
        needs_language=True,
        needs_target_language=True,
        group_by="language_pair",
    ),
    Task("lid", "accuracy", "spoken language identification", PROMPTS["lid"], labels=language_labels),
    Task("gender", "accuracy", "speaker gender", PROMPTS["gender"]),
    Task("style", "accuracy", "speaking style", PROMPTS["style"]),
    Task("sound", "accuracy", "sound event classification", PROMPTS["sound"]),
    Task("caption", "bleu", "audio captioning", PROMPTS["caption"], group_by="target_language"),
    Task("count", "accuracy", "counting sound events", PROMPTS["count"]),
    Task("chat", "exact", "a conversation turn (SFT; scored by exact match or a judge)"),
)
for _task in _BUILT_IN:
    register_task(_task)

# Registers the tasks the public corpora bring (emotion, vocal sounds, ...).
from lalm.data import task_library  # noqa: E402, F401
