"""Map-style datasets over validated manifests: decode audio, turn each stage's record into messages.

Index-based (a `datasets.Dataset` underneath), so a sampler can seek to any position on resume.
"""

from __future__ import annotations

from typing import Any

import datasets
import torch

from lalm.data.audio import SAMPLE_RATE, AudioRef, load_audio
from lalm.data.manifest import load_manifest
from lalm.data.prompts import select_prompt

Example = dict[str, Any]


def _decode_messages(messages: list[dict[str, Any]], source: str, sample_rate: int) -> list[dict[str, Any]]:
    decoded = []
    for message in messages:
        content = []
        for item in message["content"]:
            if item["type"] == "audio":
                wave = load_audio(AudioRef(**item["audio"]), sample_rate, source)
                content.append({"type": "audio", "waveform": wave})
            else:
                content.append({"type": "text", "text": item["text"]})
        decoded.append({"role": message["role"], "content": content})
    return decoded


def pretrain_messages(record: dict[str, Any], prompt_seed: int) -> list[dict[str, Any]]:
    """A pretrain record as one user turn (audio, then a natural-language instruction) and the target.

    The instruction is the record's own `prompt` if it has one, else drawn from the prompt library,
    deterministically from (prompt_seed, task, id), in `prompt_language` if the record fixes it
    (it must when the target is a label written in one language).
    """
    prompt = record.get("prompt") or select_prompt(
        record["task"],
        seed=prompt_seed,
        key=record["id"],
        language=record.get("language"),
        target_language=record.get("target_language"),
        prompt_language=record.get("prompt_language"),
    )
    user = [{"type": "audio", "audio": record["audio"], "text": None}, {"type": "text", "text": prompt}]
    return [
        {"role": "user", "content": user},
        {"role": "assistant", "content": [{"type": "text", "text": record["text"]}]},
    ]


class ManifestDataset(torch.utils.data.Dataset):
    """Examples of one stage, ready for that stage's collator (see lalm.data.collators)."""

    def __init__(
        self, records: datasets.Dataset, stage: str, prompt_seed: int = 0, sample_rate: int = SAMPLE_RATE
    ) -> None:
        self.records = records
        self.stage = stage
        self.prompt_seed = prompt_seed
        self.sample_rate = sample_rate

    @classmethod
    def from_manifest(cls, path: str, stage: str, prompt_seed: int = 0) -> ManifestDataset:
        return cls(load_manifest(path, stage), stage, prompt_seed)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Example:
        record = self.records[int(index)]
        source = record["_source"]
        example: Example = {"id": record["id"], "source": source}
        if self.stage == "dpo":
            example["prompt"] = _decode_messages(record["prompt"], source, self.sample_rate)
            example.update(chosen=record["chosen"], rejected=record["rejected"])
            return example
        messages = (
            pretrain_messages(record, self.prompt_seed) if self.stage == "pretrain" else record["messages"]
        )
        example["messages"] = _decode_messages(messages, source, self.sample_rate)
        if self.stage == "sft":
            example["mode"] = record["mode"]
        if self.stage == "pretrain":
            example["task"] = record["task"]
        return example
