"""From (record, prediction) pairs to the report's metrics, grouped by task and language."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from transformers.models.whisper.english_normalizer import BasicTextNormalizer

from lalm.data.tasks import get_task, task_names
from lalm.eval.metrics import accuracy, bleu, error_rate, map_to_label

_PLAIN = BasicTextNormalizer(remove_diacritics=False)


def _plain(text: str) -> str:
    return " ".join(_PLAIN(text).split())


def label_forms(task: str, items: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Labels and their surface forms, by the task's label rule (lalm.data.tasks): language ID maps
    "French" and "法语" to one label fr; other tasks take each distinct reference answer as a label."""
    return get_task(task).labels(items)


def _reference_label(forms: dict[str, list[str]], reference: str) -> str:
    return map_to_label(reference, forms) or reference


def _score_classification(task: str, items: list[dict[str, Any]]) -> dict[str, float]:
    references = [item["reference"] for item in items]
    forms = label_forms(task, items)
    truth = [_reference_label(forms, ref) for ref in references]
    predicted = [map_to_label(item["prediction"], forms) for item in items]
    return {f"{task}/accuracy": accuracy(truth, predicted), f"{task}/n": len(items)}


def _score_text(task: str, items: list[dict[str, Any]]) -> dict[str, float]:
    """WER/CER per language, or BLEU per group in the group's output language."""
    spec = get_task(task)
    metrics: dict[str, float] = {}
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        groups[spec.group_key(item)].append(item)
    for key, group in sorted(groups.items()):
        references = [item["reference"] for item in group]
        predictions = [item["prediction"] for item in group]
        if spec.metric == "wer":
            result = error_rate(references, predictions, key)
            metrics[f"{task}/{key}/{result['kind']}"] = result["error_rate"]
        else:
            metrics[f"{task}/{key}/bleu"] = bleu(references, predictions, key.split("-")[-1])
        metrics[f"{task}/{key}/n"] = len(group)
    return metrics


def score_generations(items: list[dict[str, Any]]) -> dict[str, float]:
    """items: {"task", "language", "target_language", "reference", "prediction"}, scored by each task's
    metric (lalm.data.tasks): wer and bleu per group, accuracy over labels, exact match for chat (the
    synthetic chat has one right answer)."""
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        by_task[item["task"]].append(item)
    metrics: dict[str, float] = {}
    for task, group in sorted(by_task.items()):
        if task not in task_names():  # an SFT/DPO record's own label: counted, not scored
            metrics[f"unscored/{task}/n"] = len(group)
            continue
        metric = get_task(task).metric
        if metric == "accuracy":
            metrics.update(_score_classification(task, group))
        elif metric in ("wer", "bleu"):
            metrics.update(_score_text(task, group))
        else:
            correct = sum(_plain(i["prediction"]) == _plain(i["reference"]) for i in group)
            metrics[f"{task}/exact_match"] = correct / len(group)
            metrics[f"{task}/n"] = len(group)
    return metrics
