"""Batched generation over eval examples, split across ranks, gathered on every rank."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from lalm.config.eval import GenerationConfig
from lalm.data.collators import CollatorConfig, GenerationCollator, model_inputs
from lalm.data.sampling import evaluation_batches
from lalm.training.distributed import rank, world_size


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
def generate_all(
    model: Any, processor: Any, examples: Any, batch_size: int, cfg: GenerationConfig, max_length: int = 4096
) -> dict[str, str | None]:
    """{example id: generated text} for every example (each generated once, on one rank).

    `examples[i]` is {"id", "messages" ending with a user turn}. An example too long for the prompt
    or the audio window gets None (scored as wrong, and counted by the caller).
    """
    collator = GenerationCollator(processor, CollatorConfig(max_length=max_length))
    model.eval()
    local: dict[str, str | None] = {}
    for pairs in evaluation_batches(len(examples), batch_size, rank(), world_size()):
        batch_examples = [examples[i] for i, real in pairs if real]
        if not batch_examples:
            continue
        batch = collator(batch_examples)
        local.update({item["id"]: None for item in batch["dropped"]})
        if batch["ids"]:
            local.update(zip(batch["ids"], _generate(model, processor, batch, cfg), strict=True))
    return gather_dicts(local)


def gather_dicts(local: dict[str, Any]) -> dict[str, Any]:
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return local
    parts: list[dict[str, Any] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local)
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part or {})
    return merged
