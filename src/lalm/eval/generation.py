"""Batched generation over eval examples, split across ranks, gathered on every rank."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from lalm.config.eval import GenerationConfig
from lalm.data.collators import CollatorConfig, GenerationCollator, model_inputs
from lalm.data.sampling import evaluation_batches
from lalm.training.distributed import all_gather, rank, world_size


@dataclass
class Generated:
    """Every rank's results: {example id: text, or None if dropped}, and the collator's report of each
    dropped example ({"id", "source", "reason", "file", "detail"}, lalm.data.collators)."""

    predictions: dict[str, str | None] = field(default_factory=dict)
    dropped: list[dict[str, Any]] = field(default_factory=list)


def _generate(model: Any, processor: Any, batch: dict[str, Any], cfg: GenerationConfig) -> list[str]:
    inputs = {k: v.to(model.device) for k, v in model_inputs(batch).items()}
    sampling = {"temperature": cfg.temperature, "top_p": cfg.top_p} if cfg.do_sample else {}
    output = model.generate(
        **inputs,
        max_new_tokens=cfg.max_new_tokens,
        num_beams=cfg.num_beams,
        do_sample=cfg.do_sample,
        **sampling,
    )
    new_tokens = output[:, inputs["input_ids"].shape[1] :]
    return [text.strip() for text in processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


@torch.no_grad()
def generate_predictions(
    model: Any, processor: Any, examples: Any, batch_size: int, cfg: GenerationConfig, max_length: int = 4096
) -> Generated:
    """Generate for every example (each once, on one rank); every rank gets all results.

    `examples[i]` is {"id", "messages" ending with a user turn}, or ManifestDataset's bad-example
    marker. An example too long for the prompt or the audio window, or whose audio cannot be used,
    gets None and a report in `dropped`. A batch whose examples were all dropped is skipped: the model
    is not sharded, so no collective has to be kept in step; every rank then meets the other ranks in
    the same two gathers at the end, whatever it skipped.
    """
    collator = GenerationCollator(processor, CollatorConfig(max_length=max_length))
    model.eval()
    local = Generated()
    for pairs in evaluation_batches(len(examples), batch_size, rank(), world_size()):
        batch_examples = [examples[i] for i, real in pairs if real]
        if not batch_examples:
            continue
        batch = collator(batch_examples)
        local.dropped.extend(batch["dropped"])
        local.predictions.update({item["id"]: None for item in batch["dropped"]})
        if batch["ids"]:
            local.predictions.update(zip(batch["ids"], _generate(model, processor, batch, cfg), strict=True))
    return Generated(gather_dicts(local.predictions), gather_lists(local.dropped))


def generate_all(
    model: Any, processor: Any, examples: Any, batch_size: int, cfg: GenerationConfig, max_length: int = 4096
) -> dict[str, str | None]:
    """{example id: generated text, or None if dropped} for every example (see generate_predictions)."""
    return generate_predictions(model, processor, examples, batch_size, cfg, max_length).predictions


def gather_dicts(local: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in all_gather(local):
        merged.update(part or {})
    return merged


def gather_lists(local: list[Any]) -> list[Any]:
    """Every rank's items, rank 0's first."""
    return [item for part in all_gather(local) for item in part or []]
