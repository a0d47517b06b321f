"""From (record, prediction) pairs to the report's metrics, grouped by task and language."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from transformers.models.whisper.english_normalizer import BasicTextNormalizer

from lalm.data.prompts import LANGUAGE_NAMES, PROMPT_LANGUAGES
from lalm.eval.metrics import accuracy, bleu, error_rate, map_to_label

CLASSIFICATION_TASKS = ("lid", "gender", "style", "sound", "count")
_PLAIN = BasicTextNormalizer(remove_diacritics=False)


def _plain(text: str) -> str:
    return " ".join(_PLAIN(text).split())


def label_forms(task: str, references: list[str]) -> dict[str, list[str]]:
    """Labels and their surface forms. Language ID: each language is one label whatever the prompt
    language ("French" and "法语" both mean fr). Other tasks: each distinct reference answer is a label."""
    if task == "lid":
        return {code: [names[p] for p in PROMPT_LANGUAGES] for code, names in LANGUAGE_NAMES.items()}
    return {ref: [ref] for ref in sorted(set(references))}


def _reference_label(forms: dict[str, list[str]], reference: str) -> str:
    return map_to_label(reference, forms) or reference


def _score_classification(task: str, items: list[dict[str, Any]]) -> dict[str, float]:
    references = [item["reference"] for item in items]
    forms = label_forms(task, references)
    truth = [_reference_label(forms, ref) for ref in references]
    predicted = [map_to_label(item["prediction"], forms) for item in items]
    return {f"{task}/accuracy": accuracy(truth, predicted), f"{task}/n": len(items)}


def _score_text(task: str, items: list[dict[str, Any]]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        if task == "asr":
            key = item["language"]
        elif task == "caption":  # captions are written in the prompt's language
            key = item.get("target_language") or "en"
        else:
            key = f"{item['language']}-{item['target_language']}"
        groups[key].append(item)
    for key, group in sorted(groups.items()):
        references = [item["reference"] for item in group]
        predictions = [item["prediction"] for item in group]
        if task == "asr":
            result = error_rate(references, predictions, key)
            metrics[f"asr/{key}/{result['kind']}"] = result["error_rate"]
        else:
            metrics[f"{task}/{key}/bleu"] = bleu(references, predictions, key.split("-")[-1])
        metrics[f"{task}/{key}/n"] = len(group)
    return metrics


def score_generations(items: list[dict[str, Any]]) -> dict[str, float]:
    """items: {"task", "language", "target_language", "reference", "prediction"}; chat items score
    exact match after normalisation (the synthetic chat has one right answer)."""
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        by_task[item["task"]].append(item)
    metrics: dict[str, float] = {}
    for task, group in sorted(by_task.items()):
        if task in CLASSIFICATION_TASKS:
            metrics.update(_score_classification(task, group))
        elif task in ("asr", "s2tt", "caption"):
            metrics.update(_score_text(task, group))
        elif task == "chat":
            correct = sum(_plain(i["prediction"]) == _plain(i["reference"]) for i in group)
            metrics["chat/exact_match"] = correct / len(group)
            metrics["chat/n"] = len(group)
    return metrics
