"""From (record, prediction) pairs to the report's metrics, grouped by task and language, and by
evaluation manifest when a task's items come from several (one benchmark subset a manifest, e.g.
AIR-Bench Foundation's tasks, or LibriSpeech's test-clean and test-other)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from transformers.models.whisper.english_normalizer import BasicTextNormalizer

from lalm.data.tasks import get_task, task_names
from lalm.eval.metrics import accuracy, bleu, error_rate, map_to_label

_PLAIN = BasicTextNormalizer(remove_diacritics=False)

Item = dict[str, Any]


def _plain(text: str) -> str:
    return " ".join(_PLAIN(text).split())


def label_forms(task: str, items: list[Item]) -> dict[str, list[str]]:
    """Labels and their surface forms, by the task's label rule (lalm.data.tasks): language ID maps
    "French" and "法语" to one label fr; other tasks take each distinct reference answer as a label."""
    return get_task(task).labels(items)


def references_of(item: Item) -> list[str]:
    """Every correct answer of an item: its `references` when the record lists several (Clotho's five
    captions, lalm.data.manifest), else its one `reference`."""
    return item.get("references") or [item["reference"]]


def _reference_label(forms: dict[str, list[str]], reference: str) -> str:
    return map_to_label(reference, forms) or reference


def _score_classification(task: str, items: list[Item], forms: dict[str, list[str]]) -> dict[str, float]:
    truth = [_reference_label(forms, item["reference"]) for item in items]
    predicted = [map_to_label(item["prediction"], forms) for item in items]
    return {f"{task}/accuracy": accuracy(truth, predicted), f"{task}/n": len(items)}


def _score_text(task: str, items: list[Item]) -> dict[str, float]:
    """WER/CER per language, or BLEU per group in the group's output language (against every
    reference an item has)."""
    spec = get_task(task)
    metrics: dict[str, float] = {}
    groups: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        groups[spec.group_key(item)].append(item)
    for key, group in sorted(groups.items()):
        predictions = [item["prediction"] for item in group]
        if spec.metric == "wer":
            result = error_rate([item["reference"] for item in group], predictions, key)
            metrics[f"{task}/{key}/{result['kind']}"] = result["error_rate"]
        else:
            references = [references_of(item) for item in group]
            metrics[f"{task}/{key}/bleu"] = bleu(references, predictions, key.split("-")[-1])
        metrics[f"{task}/{key}/n"] = len(group)
    return metrics


def _score_task(task: str, items: list[Item], forms: dict[str, list[str]]) -> dict[str, float]:
    """One registered task's metrics over `items`; `forms`: the labels of an accuracy task."""
    metric = get_task(task).metric
    if metric == "accuracy":
        return _score_classification(task, items, forms)
    if metric in ("wer", "bleu"):
        return _score_text(task, items)
    correct = sum(_plain(i["prediction"]) == _plain(i["reference"]) for i in items)
    return {f"{task}/exact_match": correct / len(items), f"{task}/n": len(items)}


def manifest_groups(items: list[Item]) -> dict[str, list[Item]]:
    """Items by the file stem of the manifest they came from (items without one are left out); two
    manifests of the same stem are one group."""
    groups: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        if item.get("manifest"):
            groups[Path(item["manifest"]).stem].append(item)
    return dict(groups)


def _per_manifest(task: str, items: list[Item], forms: dict[str, list[str]]) -> dict[str, float]:
    """The task's metrics for each manifest, named `<task>/<manifest stem>/...`, when its items come
    from more than one manifest (with one, they would repeat the task's own). An accuracy task keeps
    the labels of all its items, so that a manifest's answers are mapped as in the overall score."""
    groups = manifest_groups(items)
    if len(groups) < 2:
        return {}
    metrics: dict[str, float] = {}
    for name, members in sorted(groups.items()):
        for key, value in _score_task(task, members, forms).items():
            metrics[f"{task}/{name}/{key.removeprefix(f'{task}/')}"] = value
    return metrics


def score_generations(items: list[Item]) -> dict[str, float]:
    """items: {"task", "language", "target_language", "reference", "prediction"}, optionally
    "references" (every correct answer, for BLEU) and "manifest" (its path), scored by each task's
    metric (lalm.data.tasks): wer and bleu per group, accuracy over labels, exact match for chat and
    single-choice answers. A task whose items come from several manifests is also scored per manifest
    (`_per_manifest`: `choice/airbench_foundation_sound_aqa/exact_match`, `asr/librispeech_test_other/
    en/wer`)."""
    by_task: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_task[item["task"]].append(item)
    metrics: dict[str, float] = {}
    for task, group in sorted(by_task.items()):
        if task not in task_names():  # an SFT/DPO record's own label: counted, not scored
            metrics[f"unscored/{task}/n"] = len(group)
            continue
        forms = label_forms(task, group) if get_task(task).metric == "accuracy" else {}
        metrics.update(_score_task(task, group, forms))
        metrics.update(_per_manifest(task, group, forms))
    return metrics
