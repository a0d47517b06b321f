"""scripts/generate.py: a checkpoint's answers to every example of a manifest of any stage, one JSON
line per example, in manifest order:

    {"id": "u1", "source": "test.jsonl:1", "task": "asr", "prediction": "hello world",
     "reference": "Hello world."}

- pretrain: the prompt is the audio and its instruction; `task` the record's, `reference` its text;
- sft: the conversation up to its last user turn; `task` "chat", `mode`, `reference` the last answer;
- dpo: the pair's prompt; `task` the record's (or null), `reference` the chosen answer, `rejected`.

These are the LINE_FIELDS of the stage's `reference_fields` (lalm.stages.registry), the same function
evaluation's predictions.jsonl reads.

An example that cannot be generated for (audio missing, empty, unreadable, truncated; a clip longer
than the encoder's window; a prompt longer than max_length) is written too, with `prediction` null
and `drop_reason`, `drop_detail` and `drop_file` saying why: nothing is lost silently. Under torchrun
each rank generates its share (lalm.eval.generation); rank 0 writes the file.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from lalm.config.eval import GenerateConfig
from lalm.data.dataset import ManifestDataset
from lalm.errors import ManifestError
from lalm.eval.generation import generate_in_length_order, load_for_generation
from lalm.eval.runner import answer_fields, manifest_kind
from lalm.training.distributed import is_main

# What a line keeps of a record's reference fields, in this order where present.
LINE_FIELDS = ("task", "mode", "reference", "references", "rejected")


def reference_fields(record: dict[str, Any], kind: str) -> dict[str, Any]:
    """What a manifest record of stage `kind` says about its expected answer: task (and sft's mode),
    reference, and for a preference pair the rejected answer (the stage's `reference_fields`)."""
    return answer_fields(kind, LINE_FIELDS)(record)


def prediction_lines(
    records: list[dict[str, Any]],
    kind: str,
    predictions: dict[str, str | None],
    dropped: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """One output line per record, in order: its id, source, prediction (None if dropped, with the
    collator's reason, detail and file) and reference fields."""
    reports = {item["id"]: item for item in dropped}
    fields_of = answer_fields(kind, LINE_FIELDS)
    lines = []
    for record in records:
        line = {"id": record["id"], "source": record["_source"], **fields_of(record)}
        line["prediction"] = predictions[record["id"]]
        report = reports.get(record["id"])
        if report is not None:
            line.update(drop_reason=report["reason"], drop_detail=report["detail"], drop_file=report["file"])
        lines.append(line)
    return lines


def write_lines(path: Path, lines: list[dict[str, Any]]) -> None:
    """JSONL, written beside `path` and renamed into place, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    partial.replace(path)


def check_unique_ids(path: str, records: list[dict[str, Any]]) -> None:
    """ManifestError at the first id seen twice: answers are matched to examples by id."""
    seen: dict[str, str] = {}
    for record in records:
        if record["id"] in seen:
            line = int(record["_source"].rsplit(":", 1)[1])
            raise ManifestError(path, line, f"id {record['id']!r} repeats {seen[record['id']]}'s")
        seen[record["id"]] = record["_source"]


def run_generation(cfg: GenerateConfig) -> dict[str, Any]:
    """Generate for cfg.manifest's examples; rank 0 writes cfg.output. Returns a summary:
    {"output", "kind", "examples", "generated", "dropped": {reason: count}}."""
    kind = manifest_kind(cfg.manifest)
    dataset = ManifestDataset.from_manifest(cfg.manifest, kind, cfg.prompt_seed)
    count = min(len(dataset), cfg.max_examples) if cfg.max_examples else len(dataset)
    records = dataset.records.select(range(count)).to_list()
    check_unique_ids(cfg.manifest, records)
    model, processor = load_for_generation(cfg.checkpoint)
    generated = generate_in_length_order(
        model, processor, dataset, records, list(range(count)), cfg.batch_size, cfg.generation, cfg.max_length
    )
    lines = prediction_lines(records, kind, generated.predictions, generated.dropped)
    if is_main():
        write_lines(Path(cfg.output), lines)
    reasons = Counter(line["drop_reason"] for line in lines if line["prediction"] is None)
    return {
        "output": cfg.output,
        "kind": kind,
        "examples": len(lines),
        "generated": len(lines) - sum(reasons.values()),
        "dropped": dict(sorted(reasons.items())),
    }
