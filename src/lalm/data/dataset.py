"""Map-style datasets over validated manifests: decode audio, turn each stage's record into messages.

Index-based (a `datasets.Dataset` underneath), so a sampler can seek to any position on resume.

An example whose audio cannot be used (lalm.data.audio: missing, empty, unreadable, truncated, NaN,
shorter than its manifest duration) does not raise: it comes back as a marker

    {"id": "u7", "source": "train.jsonl:7", "bad": {"reason": "truncated_audio", "file": "/a/u7.wav",
                                                    "detail": "truncated: the WAV header declares ..."}}

that every collator drops and reports in its batch's `dropped` list. A marker is plain data, so it
travels from DataLoader workers like any example; one bad file never stops a run.
"""

from __future__ import annotations

from typing import Any

import datasets
import torch

from lalm.config.augment import AugmentConfig
from lalm.data.audio import DURATION_TOLERANCE_S, SAMPLE_RATE, AudioRef, load_audio
from lalm.data.augment import NoiseBank, clip_rng, perturb_waveform
from lalm.data.manifest import load_manifest
from lalm.data.prompts import select_prompt
from lalm.errors import AudioLoadError
from lalm.stages.registry import get_stage, load

Example = dict[str, Any]


def _decode_messages(
    messages: list[dict[str, Any]], source: str, sample_rate: int, tolerance_s: float | None
) -> list[dict[str, Any]]:
    """Messages with each audio item decoded: {"type": "audio", "waveform": (samples,) float32, "file"}.
    Raises AudioLoadError (with its `reason`) for the first clip that cannot be used."""
    decoded = []
    for message in messages:
        content = []
        for item in message["content"]:
            if item["type"] == "audio":
                ref = AudioRef(**item["audio"])
                wave = load_audio(ref, sample_rate, source, tolerance_s)
                content.append({"type": "audio", "waveform": wave, "file": ref.path})
            else:
                content.append({"type": "text", "text": item["text"]})
        decoded.append({"role": message["role"], "content": content})
    return decoded


def instruction_of(record: dict[str, Any], prompt_seed: int) -> str:
    """A pretrain record's instruction: its own `prompt`, else one drawn from its task's library."""
    return record.get("prompt") or select_prompt(
        record["task"],
        seed=prompt_seed,
        key=record["id"],
        language=record.get("language"),
        target_language=record.get("target_language"),
        prompt_language=record.get("prompt_language"),
    )


def pretrain_messages(record: dict[str, Any], prompt_seed: int) -> list[dict[str, Any]]:
    """A pretrain record as one user turn (audio, then a natural-language instruction) and the target.

    The instruction is the record's own `prompt` if it has one, else drawn from the prompt library,
    deterministically from (prompt_seed, task, id), in `prompt_language` if the record fixes it
    (it must when the target is a label written in one language).
    """
    prompt = instruction_of(record, prompt_seed)
    user = [{"type": "audio", "audio": record["audio"], "text": None}, {"type": "text", "text": prompt}]
    return [
        {"role": "user", "content": user},
        {"role": "assistant", "content": [{"type": "text", "text": record["text"]}]},
    ]


def pretrain_example(record: dict[str, Any], prompt_seed: int) -> Example:
    """A pretrain record's example fields: its conversation (pretrain_messages) and task."""
    return {"messages": pretrain_messages(record, prompt_seed), "task": record["task"]}


def sft_example(record: dict[str, Any], prompt_seed: int) -> Example:
    """An SFT record's example fields: its conversation and mode (the sample stream mixes modes)."""
    return {"messages": record["messages"], "mode": record["mode"]}


def dpo_example(record: dict[str, Any], prompt_seed: int) -> Example:
    """A DPO record's example fields: the prompt conversation and the two responses."""
    return {"prompt": record["prompt"], "chosen": record["chosen"], "rejected": record["rejected"]}


# Where an example holds its conversation (see lalm.stages.registry's to_example): its audio is decoded.
CONVERSATION_KEYS = ("messages", "prompt")


def bad_example(example_id: str, source: str, err: AudioLoadError) -> Example:
    """The marker that stands for an example whose audio cannot be used (see the module docstring)."""
    bad = {"reason": err.reason, "file": err.audio_path, "detail": err.detail}
    return {"id": example_id, "source": source, "bad": bad}


class ManifestDataset(torch.utils.data.Dataset):
    """Examples of one stage, ready for that stage's collator (see lalm.data.collators): the stage's
    `to_example` (lalm.stages.registry) with the audio of its conversation decoded.

    duration_tolerance_s: how far a clip may fall short of its manifest `duration` before it is
    dropped as duration_mismatch (DataConfig.duration_tolerance_s; None: not compared).
    """

    def __init__(
        self,
        records: datasets.Dataset,
        stage: str,
        prompt_seed: int = 0,
        sample_rate: int = SAMPLE_RATE,
        duration_tolerance_s: float | None = DURATION_TOLERANCE_S,
    ) -> None:
        self.records = records
        self.stage = stage
        self._to_example = load(get_stage(stage).to_example)
        self.prompt_seed = prompt_seed
        self.sample_rate = sample_rate
        self.duration_tolerance_s = duration_tolerance_s
        self.augment: AugmentConfig | None = None
        self.augment_seed = 0
        self.noises: NoiseBank | None = None

    def augmented(self, cfg: AugmentConfig, seed: int) -> ManifestDataset:
        """This dataset, its clips augmented by `cfg` (training only; evaluation never augments).
        Items must then be asked for as (index, stream position): the draws come from
        (seed, position, clip), see lalm.data.augment."""
        self.augment, self.augment_seed = (cfg, seed) if cfg.enabled else (None, 0)
        self.noises = NoiseBank(cfg.noise_manifest, self.sample_rate) if cfg.noise_manifest else None
        return self

    @classmethod
    def from_manifest(
        cls,
        path: str,
        stage: str,
        prompt_seed: int = 0,
        duration_tolerance_s: float | None = DURATION_TOLERANCE_S,
    ) -> ManifestDataset:
        records = load_manifest(path, stage)
        return cls(records, stage, prompt_seed, duration_tolerance_s=duration_tolerance_s)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]) -> Example:
        """The decoded example, or a bad-example marker ({"id", "source", "bad"}) if its audio fails.
        `key` is an index, or (index, stream position) when the dataset augments."""
        index, position = key if isinstance(key, tuple) else (key, None)
        record = self.records[int(index)]
        try:
            example = self._decoded(record)
        except AudioLoadError as err:
            return bad_example(record["id"], record["_source"], err)
        if self.augment is not None:
            if position is None:
                raise ValueError(
                    "an augmenting dataset needs (index, position) keys: RankBatches(positions=True)"
                )
            self._augment(example, int(position))
        return example

    def _augment(self, example: Example, position: int) -> None:
        """Perturb every clip of the example in place, clip c drawing from (seed, position, c)."""
        assert self.augment is not None
        messages = [m for key in CONVERSATION_KEYS for m in example.get(key, [])]
        clips = [item for m in messages for item in m["content"]]
        clips = [item for item in clips if item["type"] == "audio"]
        for number, item in enumerate(clips):
            rng = clip_rng(self.augment_seed, position, number)
            item["waveform"] = perturb_waveform(
                item["waveform"], self.augment, rng, self.noises, self.sample_rate
            )
        # The collator draws SpecAugment's masks on the log-mels from the same (seed, position).
        example["augment"] = {"seed": self.augment_seed, "position": position, "config": self.augment}

    def _decode(self, messages: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
        return _decode_messages(messages, source, self.sample_rate, self.duration_tolerance_s)

    def _decoded(self, record: dict[str, Any]) -> Example:
        source = record["_source"]
        example: Example = {
            "id": record["id"],
            "source": source,
            **self._to_example(record, self.prompt_seed),
        }
        for key in CONVERSATION_KEYS:
            if key in example:
                example[key] = self._decode(example[key], source)
        return example
