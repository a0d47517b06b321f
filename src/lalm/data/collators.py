"""Collators for the three stages: examples with decoded waveforms in, padded tensors out.

Input example (pretrain and sft; the dataset turns a pretrain record into this form):

    {"id": "u1", "source": "train.jsonl:3",
     "messages": [{"role": "user", "content": [{"type": "audio", "waveform": np.ndarray(16 kHz)},
                                               {"type": "text", "text": "Transcribe the speech."}]},
                  {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]}]}

Output (R rows, L tokens, C clips, S audio spans; S == C except for DPO):

    input_ids (R, L) long, right-padded with <|endoftext|>; attention_mask (R, L) long
    labels (R, L) long: the token id on assistant content and its <|im_end|>, -100 elsewhere
    input_features (C, mel, F) float32 and feature_attention_mask (C, F) long  [only if C > 0]; F is
        the longest clip's mel frames + 2, rounded up to a multiple of 4 (lalm.models.encoder), or the
        full window with trim_audio=False (what stock transformers' encoder accepts)
    audio_clip_index (S,) long: which clip fills the s-th audio span, spans in row-major order
    ids: list of example ids kept; dropped: [{"id", "source", "reason"}] for examples left out
    example_weights (E,) float: each kept example's "weight" (default 1.0; 0 marks evaluation padding)

An example is never cut: one longer than max_length, or with a clip longer than the encoder's window,
is dropped and reported in `dropped` (cutting inside an audio span is what breaks other tools with
"audio features and audio tokens do not match"). DPO rows are [chosen_0..chosen_B-1,
rejected_0..rejected_B-1]; both rows of a pair point at the same clips, so each clip is carried once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import Qwen2AudioProcessor

from lalm.data.chat import (
    DEFAULT_SYSTEM_PROMPT,
    audio_token_count,
    mel_frame_count,
    render_chatml,
    supervised_mask,
)
from lalm.models.encoder import trim_features, trimmed_length
from lalm.models.tokenizer import ENDOFTEXT

IGNORE_INDEX = -100
Example = dict[str, Any]


@dataclass(frozen=True)
class CollatorConfig:
    max_length: int = 2048
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    pad_to_multiple_of: int = 1
    trim_audio: bool = True


@dataclass
class _Row:
    input_ids: list[int]
    labels: list[int]
    num_spans: int


def _clips(messages: Sequence[dict[str, Any]]) -> list[np.ndarray]:
    return [item["waveform"] for m in messages for item in m["content"] if item["type"] == "audio"]


class _BaseCollator:
    def __init__(self, processor: Qwen2AudioProcessor, config: CollatorConfig | None = None) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.feature_extractor = processor.feature_extractor
        self.config = config or CollatorConfig()
        self.pad_id = self.tokenizer.convert_tokens_to_ids(ENDOFTEXT)

    def _token_counts(self, clips: Sequence[np.ndarray]) -> list[int] | None:
        """Audio tokens per clip, or None if a clip does not fit the encoder's window."""
        window = self.feature_extractor.n_samples
        if any(len(clip) > window for clip in clips):
            return None
        hop = self.feature_extractor.hop_length
        return [audio_token_count(mel_frame_count(len(clip), hop)) for clip in clips]

    def _row(
        self, messages: Sequence[dict[str, Any]], counts: Sequence[int], generation: bool = False
    ) -> _Row | None:
        text, spans = render_chatml(messages, counts, self.config.system_prompt, generation)
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = encoded["input_ids"]
        if len(ids) > self.config.max_length:
            return None
        mask = supervised_mask(encoded["offset_mapping"], spans)
        labels = [tok if keep else IGNORE_INDEX for tok, keep in zip(ids, mask, strict=True)]
        return _Row(ids, labels, len(counts))

    def _features(self, clips: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        if not clips:
            return {}
        extractor = self.feature_extractor
        samples = extractor.n_samples
        if self.config.trim_audio:
            # Log-mels only as far as the cut reaches: frame i reads samples up to i x hop + n_fft / 2, so
            # padding to that many samples gives the kept frames exactly as the full window would (the
            # per-clip maximum the extractor clamps against comes from the clip, not its padding).
            longest = max(mel_frame_count(len(clip), extractor.hop_length) for clip in clips)
            frames = trimmed_length(torch.tensor([longest]), extractor.nb_max_frames)
            reach = frames + -(-(extractor.n_fft // 2) // extractor.hop_length)
            samples = min(samples, reach * extractor.hop_length)
        out = extractor(
            list(clips),
            sampling_rate=extractor.sampling_rate,
            padding="max_length",
            max_length=samples,
            return_attention_mask=True,
            return_tensors="pt",
        )
        features, mask = out["input_features"].float(), out["attention_mask"].long()
        if self.config.trim_audio:
            # A clip's frames do not depend on which clips share its batch (tested against the full window).
            features, mask = trim_features(features, mask)
        return {"input_features": features, "feature_attention_mask": mask}

    def _pad(self, rows: Sequence[_Row], left: bool = False) -> dict[str, torch.Tensor]:
        """Right padding for training; left padding for generation (new tokens follow the prompt)."""
        longest = max((len(r.input_ids) for r in rows), default=0)
        multiple = self.config.pad_to_multiple_of
        longest = -(-longest // multiple) * multiple
        input_ids = torch.full((len(rows), longest), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), longest), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row.input_ids)
            span = slice(longest - n, longest) if left else slice(0, n)
            input_ids[i, span] = torch.tensor(row.input_ids)
            labels[i, span] = torch.tensor(row.labels)
            attention_mask[i, span] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    @staticmethod
    def _dropped(example: Example, reason: str) -> dict[str, str]:
        return {"id": str(example["id"]), "source": str(example.get("source", "")), "reason": reason}


class ConversationCollator(_BaseCollator):
    """Pretrain and SFT: one row per example (single- or multi-turn, chat or analysis mode)."""

    generation = False

    def __call__(self, examples: Sequence[Example]) -> dict[str, Any]:
        rows: list[_Row] = []
        clips: list[np.ndarray] = []
        ids: list[str] = []
        weights: list[float] = []
        tasks: list[str | None] = []
        dropped: list[dict[str, str]] = []
        for example in examples:
            example_clips = _clips(example["messages"])
            counts = self._token_counts(example_clips)
            if counts is None:
                dropped.append(self._dropped(example, "audio_longer_than_window"))
                continue
            row = self._row(example["messages"], counts, self.generation)
            if row is None:
                dropped.append(self._dropped(example, "longer_than_max_length"))
                continue
            rows.append(row)
            clips.extend(example_clips)
            ids.append(str(example["id"]))
            weights.append(float(example.get("weight", 1.0)))
            tasks.append(example.get("task"))
        batch: dict[str, Any] = self._pad(rows, left=self.generation)
        batch.update(self._features(clips))
        batch["audio_clip_index"] = torch.arange(len(clips), dtype=torch.long)
        batch.update(ids=ids, dropped=dropped, example_weights=torch.tensor(weights, dtype=torch.float32))
        batch["tasks"] = tasks
        return batch


class PreferenceCollator(_BaseCollator):
    """DPO: a chosen and a rejected row per prompt; the prompt's clips are carried once per pair."""

    def __call__(self, examples: Sequence[Example]) -> dict[str, Any]:
        chosen: list[_Row] = []
        rejected: list[_Row] = []
        clips: list[np.ndarray] = []
        clip_index: list[list[int]] = []
        ids: list[str] = []
        weights: list[float] = []
        dropped: list[dict[str, str]] = []
        for example in examples:
            prompt_clips = _clips(example["prompt"])
            counts = self._token_counts(prompt_clips)
            if counts is None:
                dropped.append(self._dropped(example, "audio_longer_than_window"))
                continue
            pair = [
                self._row([*example["prompt"], _assistant(example[side])], counts)
                for side in ("chosen", "rejected")
            ]
            if pair[0] is None or pair[1] is None:
                dropped.append(self._dropped(example, "longer_than_max_length"))
                continue
            chosen.append(pair[0])
            rejected.append(pair[1])
            clip_index.append(list(range(len(clips), len(clips) + len(prompt_clips))))
            clips.extend(prompt_clips)
            ids.append(str(example["id"]))
            weights.append(float(example.get("weight", 1.0)))
        batch: dict[str, Any] = self._pad(chosen + rejected)
        batch.update(self._features(clips))
        flat = [i for spans in clip_index for i in spans]
        batch["audio_clip_index"] = torch.tensor(flat + flat, dtype=torch.long)
        batch.update(num_pairs=len(ids), ids=ids, dropped=dropped)
        batch["example_weights"] = torch.tensor(weights, dtype=torch.float32)
        return batch


class GenerationCollator(ConversationCollator):
    """Prompts for generation: each example's messages end with a user turn; the assistant header is
    appended and rows are left-padded (new tokens follow the prompt). Labels are all -100."""

    generation = True


def _assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def model_inputs(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Arguments for Qwen2AudioForConditionalGeneration.forward.

    The model wants one feature row per audio span, so clips shared by several rows (DPO) are
    repeated here; a stage that encodes each clip once uses `audio_clip_index` directly instead.
    """
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if "input_features" in batch:
        index = batch["audio_clip_index"]
        inputs["input_features"] = batch["input_features"][index]
        inputs["feature_attention_mask"] = batch["feature_attention_mask"][index]
    return inputs
