"""Evaluate a checkpoint on eval manifests: generate, score, write metrics.json, metrics.md and
predictions.jsonl (preferences.jsonl for preference pairs). Each manifest's kind is the stage its
records belong to, and the stage registry says how it is evaluated (StageSpec.evaluation): pretrain
(task + audio + reference) and sft (chat responses: exact match, optional judge) by generation, dpo by
preference accuracy/margin. What a record says about its expected answer is its stage's
`reference_fields` (pretrain_reference, sft_reference, dpo_reference below), shared with
scripts/generate.py (lalm.eval.batch_generation).

Bad examples never stop an evaluation. Each is counted by reason (`generation/dropped/<reason>`,
`preference/dropped/<reason>`, totals in `generation/dropped`, `preference/dropped`) and named in
bad_examples.jsonl. One whose audio cannot be used (missing, empty, unreadable, truncated, NaN,
shorter than its manifest duration) is left out of the scores: no model could answer it. One longer
than the prompt limit or the audio window is scored as a wrong answer, as before: that is the model's
limit. Dropped pairs are left out of the preference numbers either way."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lalm.config.eval import EvalConfig
from lalm.data.audio import AUDIO_REASONS
from lalm.data.collators import CollatorConfig, real_ids
from lalm.data.dataset import ManifestDataset
from lalm.data.sampling import evaluation_batches
from lalm.data.tasks import task_names
from lalm.errors import ManifestError
from lalm.eval.generation import (
    ManifestPrompts,
    gather_dicts,
    gather_lists,
    generate_in_length_order,
    load_for_generation,
)
from lalm.eval.judge import judge_chat
from lalm.eval.metrics import preference_summary
from lalm.eval.scoring import score_generations
from lalm.models.training import sequence_logps_of
from lalm.stages.base import to_device
from lalm.stages.registry import EVALUATIONS, build_collator, get_stage, guess_stage, load, stage_names
from lalm.training.distributed import device, is_main, rank, world_size


def manifest_kind(path: str) -> str:
    """The stage whose records the manifest holds (a registered stage's name), guessed from the first
    record's keys (lalm.stages.registry.guess_stage); loading the manifest then checks every line."""
    with open(path, encoding="utf-8") as handle:
        first = next((line for line in handle if line.strip()), None)
    if first is None:
        raise ManifestError(path, 0, "manifest holds no examples")
    record = json.loads(first)
    return guess_stage(record) if isinstance(record, dict) else stage_names()[0]


_Prompts = ManifestPrompts  # the name tests/integration/test_learning.py imports


def _answer_text(message: dict[str, Any]) -> str:
    return "".join(item["text"] for item in message["content"] if item["type"] == "text")


def pretrain_reference(record: dict[str, Any]) -> dict[str, Any]:
    """A pretraining record's task, language and the language its answer is in (a caption's is the
    prompt's language, a translation's the target), and its text as the reference; with every correct
    answer as `references` where the record lists several (Clotho's five captions, scored together)."""
    target = record["prompt_language"] if record["task"] == "caption" else record["target_language"]
    fields = {
        "task": record["task"],
        "language": record["language"],
        "target_language": target,
        "reference": record["text"],
    }
    return {**fields, "references": record["references"]} if record.get("references") else fields


def sft_reference(record: dict[str, Any]) -> dict[str, Any]:
    """An SFT conversation: task "chat", its mode, and its last answer as the reference."""
    answers = [m for m in record["messages"] if m["role"] == "assistant"]
    return {
        "task": "chat",
        "mode": record["mode"],
        "language": None,
        "target_language": None,
        "reference": _answer_text(answers[-1]),
    }


def dpo_reference(record: dict[str, Any]) -> dict[str, Any]:
    """A preference pair: its task (or None), the chosen answer as the reference, and the rejected one."""
    return {
        "task": record.get("task"),
        "language": None,
        "target_language": None,
        "reference": record["chosen"],
        "rejected": record["rejected"],
    }


# What predictions.jsonl keeps of a record's reference fields, in this order where present.
ITEM_FIELDS = ("task", "mode", "language", "target_language", "reference", "references")


def answer_fields(kind: str, keep: tuple[str, ...]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Stage `kind`'s `reference_fields` (resolved once, for a whole manifest), keeping the keys in
    `keep`: ITEM_FIELDS for predictions.jsonl, generate.py's LINE_FIELDS for its lines."""
    fields_of = load(get_stage(kind).reference_fields)
    return lambda record: {key: value for key, value in fields_of(record).items() if key in keep}


def _meta(record: dict[str, Any], kind: str) -> dict[str, Any]:
    """A predictions.jsonl item's reference fields: the ITEM_FIELDS of the stage's `reference_fields`."""
    return answer_fields(kind, ITEM_FIELDS)(record)


def evaluate_generation(
    model: Any, processor: Any, path: str, kind: str, cfg: EvalConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One item per example of the manifest (its reference and prediction; `drop_reason` when it was
    dropped, `dropped` True then), and the reports of the dropped examples."""
    dataset = ManifestDataset.from_manifest(path, kind, cfg.prompt_seed)
    count = min(len(dataset), cfg.max_examples) if cfg.max_examples else len(dataset)
    records = dataset.records.select(range(count)).to_list()  # one read; each is used twice below
    meta_of = answer_fields(kind, ITEM_FIELDS)
    metas = [meta_of(record) for record in records]
    indices = [i for i, meta in enumerate(metas) if not cfg.tasks or meta["task"] in cfg.tasks]
    generated = generate_in_length_order(
        model, processor, dataset, records, indices, cfg.batch_size, cfg.generation
    )
    reasons = {item["id"]: item["reason"] for item in generated.dropped}
    items = []
    for index in indices:
        record = records[index]
        prediction = generated.predictions[record["id"]]
        items.append(
            {
                "id": record["id"],
                "manifest": path,
                **metas[index],
                "prediction": prediction if prediction is not None else "",
                "dropped": prediction is None,
                "drop_reason": reasons.get(record["id"]),
            }
        )
    return items, generated.dropped


@torch.no_grad()
def evaluate_preference(
    model: Any, reference: Any, processor: Any, path: str, kind: str, cfg: EvalConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One row per held-out pair of a preference manifest of stage `kind` (log-probs of chosen and
    rejected under the model, and with a reference the implicit rewards beta * log(pi/pi_ref)), and
    the stage collator's reports of the pairs dropped (too long, or audio that cannot be used).
    Metrics come from `preference_metrics`."""
    dataset = ManifestDataset.from_manifest(path, kind, cfg.prompt_seed)
    count = min(len(dataset), cfg.max_examples) if cfg.max_examples else len(dataset)
    collator = build_collator(kind, processor, CollatorConfig(max_length=4096))
    local: dict[str, tuple[float, float, float, float]] = {}
    dropped: list[dict[str, Any]] = []
    for pairs in evaluation_batches(count, cfg.batch_size, rank(), world_size()):
        real = [dataset[i] for i, is_real in pairs if is_real]
        if not real:
            continue
        batch = to_device(collator(real), device())
        dropped.extend(batch["dropped"])
        kept = real_ids(batch)  # a placeholder pair, if any, is the last one
        if not kept:  # all dropped (the model is not sharded: nothing to keep in step)
            continue
        n = batch["num_pairs"]
        policy = sequence_logps_of(model, batch)[0]
        ref = sequence_logps_of(reference, batch)[0] if reference is not None else torch.zeros_like(policy)
        for j, example_id in enumerate(kept):
            local[example_id] = (float(policy[j]), float(policy[n + j]), float(ref[j]), float(ref[n + j]))
    gathered = gather_dicts(local)
    tasks = dict(zip(dataset.records["id"][:count], dataset.records["task"][:count], strict=True))
    rows = []
    for example_id, (c, r, rc, rr) in sorted(gathered.items()):
        row = {
            "id": example_id,
            "manifest": path,
            "task": tasks[example_id],
            "logps/chosen": c,
            "logps/rejected": r,
        }
        if reference is not None:
            row.update({"rewards/chosen": cfg.beta * (c - rc), "rewards/rejected": cfg.beta * (r - rr)})
        rows.append(row)
    return rows, gather_lists(dropped)


def preference_metrics(rows: list[dict[str, Any]]) -> dict[str, float]:
    """preference/{logp_accuracy,n} (the share of pairs where log pi(chosen) > log pi(rejected), which
    needs no reference) and, where the rows have rewards, preference/{accuracy,margin}; overall and
    per pair task (preference/<task>/...), over the pairs of every DPO manifest together."""
    groups: dict[str, list[dict[str, Any]]] = {"preference": rows}
    for row in rows:
        if row["task"] is not None:
            groups.setdefault(f"preference/{row['task']}", []).append(row)
    metrics: dict[str, float] = {}
    for prefix, members in groups.items():
        metrics[f"{prefix}/logp_accuracy"] = sum(
            r["logps/chosen"] > r["logps/rejected"] for r in members
        ) / max(len(members), 1)
        metrics[f"{prefix}/n"] = len(members)
        if members and "rewards/chosen" in members[0]:
            summary = preference_summary(
                [r["rewards/chosen"] for r in members], [r["rewards/rejected"] for r in members]
            )
            metrics.update({f"{prefix}/accuracy": summary["accuracy"], f"{prefix}/margin": summary["margin"]})
    return metrics


def run_evaluation(cfg: EvalConfig) -> dict[str, float]:
    """Evaluate cfg.checkpoint on every manifest; rank 0 writes the outputs. Returns the metrics."""
    if not cfg.manifests:
        raise ValueError("no eval manifests given: set manifests=[...]")
    unknown = sorted(set(cfg.tasks) - set(task_names()))
    if unknown:
        raise ValueError(f"tasks={unknown} are not tasks; choose from {list(task_names())}")
    kinds = {path: manifest_kind(path) for path in cfg.manifests}
    ways = {path: get_stage(kind).evaluation for path, kind in kinds.items()}
    model, processor = load_for_generation(cfg.checkpoint)
    compares = "preference" in ways.values()
    reference = load_for_generation(cfg.reference)[0] if cfg.reference and compares else None
    metrics: dict[str, float] = {}
    results: dict[str, list[dict[str, Any]]] = {way: [] for way in EVALUATIONS}
    dropped: dict[str, list[dict[str, Any]]] = {way: [] for way in EVALUATIONS}
    for path, kind in kinds.items():
        if ways[path] == "preference":
            rows, left_out = evaluate_preference(model, reference, processor, path, kind, cfg)
        else:
            rows, left_out = evaluate_generation(model, processor, path, kind, cfg)
        results[ways[path]] += rows
        dropped[ways[path]] += left_out
    items, pairs = results["generation"], results["preference"]
    if compares:
        metrics.update(preference_metrics(pairs))
        metrics.update(drop_counts("preference", dropped["preference"]))
    scored = [item for item in items if item["drop_reason"] not in AUDIO_REASONS]
    metrics.update(score_generations(scored))
    if items:
        metrics.update(drop_counts("generation", dropped["generation"]))
    chat = [item for item in scored if item["task"] == "chat"]
    if chat and is_main():
        metrics.update(judge_chat(chat, cfg.judge))
    if is_main():
        write_outputs(Path(cfg.output_dir), metrics, items, cfg, pairs)
        write_bad_examples(Path(cfg.output_dir), [*dropped["generation"], *dropped["preference"]])
    return metrics


def drop_counts(prefix: str, dropped: list[dict[str, Any]]) -> dict[str, float]:
    """{prefix}/dropped (all) and {prefix}/dropped/<reason> for each reason seen."""
    counts: dict[str, float] = {f"{prefix}/dropped": len(dropped)}
    for item in dropped:
        key = f"{prefix}/dropped/{item['reason']}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def write_bad_examples(out: Path, dropped: list[dict[str, Any]]) -> None:
    """bad_examples.jsonl: one line per dropped example, {"id", "source", "reason", "file", "detail"}."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "bad_examples.jsonl").open("w", encoding="utf-8") as handle:
        for item in dropped:
            handle.write(json.dumps(item, ensure_ascii=False) + "\n")


def write_outputs(
    out: Path,
    metrics: dict[str, float],
    items: list[dict[str, Any]],
    cfg: EvalConfig,
    pairs: list[dict[str, Any]] | None = None,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(
        json.dumps({"checkpoint": cfg.checkpoint, "metrics": metrics}, indent=2) + "\n"
    )
    lines = [f"| {name} | {value:.4g} |" for name, value in sorted(metrics.items())]
    table = "\n".join(["| metric | value |", "|---|---|", *lines])
    (out / "metrics.md").write_text(f"# Evaluation of `{cfg.checkpoint}`\n\n{table}\n")
    for name, rows in (("predictions.jsonl", items), ("preferences.jsonl", pairs or [])):
        with (out / name).open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
