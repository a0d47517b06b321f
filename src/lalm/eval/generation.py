"""Generation from conversations, the one path behind evaluation, scripts/generate.py and scripts/chat.py.

A conversation (messages ending with a user turn) becomes model inputs through GenerationCollator
(`conversation_inputs`), and `generate_texts` runs model.generate on them, optionally streaming the
tokens of a one-row batch as they come (transformers' TextStreamer). Over a manifest of any stage,
`generate_in_length_order` splits the examples across ranks and gathers every rank's answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TextIO

import torch
from transformers import TextStreamer

from lalm.config.eval import GenerationConfig
from lalm.config.model import PretrainedModelConfig
from lalm.data.collators import CollatorConfig, GenerationCollator, model_inputs
from lalm.data.dataset import ManifestDataset
from lalm.data.sampling import deal_in_order, evaluation_batches, record_cost
from lalm.models.builders import build_pretrained
from lalm.training.distributed import all_gather, device, from_main, is_main, rank, world_size


@dataclass
class Generated:
    """Every rank's results: {example id: text, or None if dropped}, and the collator's report of each
    dropped example ({"id", "source", "reason", "file", "detail"}, lalm.data.collators)."""

    predictions: dict[str, str | None] = field(default_factory=dict)
    dropped: list[dict[str, Any]] = field(default_factory=list)


class WriterStreamer(TextStreamer):
    """TextStreamer that writes the new text to `out` (not only stdout) as soon as it is decoded; the
    prompt and special tokens are left out, and so is leading whitespace (as generate_texts strips
    it: byte-level BPE words start with a space); a newline ends the answer."""

    def __init__(self, processor: Any, out: TextIO) -> None:
        super().__init__(processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.out = out
        self.started = False

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if not self.started:
            text = text.lstrip()
            self.started = bool(text)
        self.out.write(text + ("\n" if stream_end else ""))
        self.out.flush()


def load_for_generation(path: str) -> tuple[Any, Any]:
    """(model in eval mode on this rank's device, processor) from a checkpoint folder (any final/)."""
    model, processor = build_pretrained(PretrainedModelConfig(path=path))
    model.to(device())  # type: ignore[arg-type]  # transformers types .to() narrowly
    return model.eval(), processor


def conversation_inputs(
    processor: Any, messages: list[dict[str, Any]], max_length: int = 4096
) -> dict[str, Any]:
    """One conversation as a generation batch of one row: GenerationCollator's output for
    {"id": "conversation", "messages": messages}. `messages` end with a user turn; audio items carry
    decoded waveforms ({"type": "audio", "waveform": (samples,) float32}). A conversation longer than
    max_length tokens or with a clip longer than the encoder's window comes back with 0 rows and the
    reason in batch["dropped"][0]."""
    collator = GenerationCollator(processor, CollatorConfig(max_length=max_length))
    return collator([{"id": "conversation", "messages": messages}])


def generate_texts(
    model: Any,
    processor: Any,
    batch: dict[str, Any],
    cfg: GenerationConfig,
    streamer: TextStreamer | None = None,
) -> list[str]:
    """The answer to each row of a GenerationCollator batch (R rows -> R stripped strings). With a
    streamer (one row, num_beams 1: what transformers' streamers support) the new tokens are also
    handed to it as they are generated."""
    rows = batch["input_ids"].shape[0]
    if streamer is not None and (rows != 1 or cfg.num_beams != 1):
        raise ValueError(
            f"streaming needs one row and num_beams=1, got {rows} rows and {cfg.num_beams} beams"
        )
    inputs = {k: v.to(model.device) for k, v in model_inputs(batch).items()}
    sampling = {"temperature": cfg.temperature, "top_p": cfg.top_p} if cfg.do_sample else {}
    output = model.generate(
        **inputs,
        max_new_tokens=cfg.max_new_tokens,
        num_beams=cfg.num_beams,
        do_sample=cfg.do_sample,
        streamer=streamer,
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
            texts = generate_texts(model, processor, batch, cfg)
            local.predictions.update(zip(batch["ids"], texts, strict=True))
    return Generated(gather_dicts(local.predictions), gather_lists(local.dropped))


class ManifestPrompts:
    """A manifest's examples as generation prompts, audio decoded lazily: the conversation up to its
    last user turn (pretrain: audio + instruction; sft: the turns before the last answer; dpo: the
    pair's prompt). A bad-example marker passes through for the collator to drop and report."""

    def __init__(self, dataset: ManifestDataset, indices: list[int]) -> None:
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        example = self.dataset[self.indices[index]]
        if "bad" in example:
            return example
        messages = example["prompt"] if "prompt" in example else example["messages"]
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        return {"id": example["id"], "source": example["source"], "messages": messages[: last_user + 1]}


def generate_in_length_order(
    model: Any,
    processor: Any,
    dataset: ManifestDataset,
    records: list[dict[str, Any]],
    indices: list[int],
    batch_size: int,
    cfg: GenerationConfig,
    max_length: int = 4096,
) -> Generated:
    """generate_predictions over dataset[i] for i in `indices` (`records[i]` is its manifest record).

    A generation batch pads to its longest prompt and decodes until its longest answer ends, so
    examples go in order of length (audio + text, the reference standing in for the answer), dealt
    across ranks so that each gets short and long ones alike. Rank 0's order is used everywhere
    (costs may read audio headers), so every example is generated exactly once.
    """
    ranked = from_main(sorted(indices, key=lambda i: record_cost(records[i])) if is_main() else None)
    order = deal_in_order(ranked, world_size())
    return generate_predictions(
        model, processor, ManifestPrompts(dataset, order), batch_size, cfg, max_length
    )


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
