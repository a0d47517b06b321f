"""Collators for the three stages: examples with decoded waveforms in, padded tensors out.

Input example (pretrain and sft; the dataset turns a pretrain record into this form):

    {"id": "u1", "source": "train.jsonl:3",
     "messages": [{"role": "user", "content": [{"type": "audio", "waveform": np.ndarray(16 kHz)},
                                               {"type": "text", "text": "Transcribe the speech."}]},
                  {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]}]}

Output (R rows, L tokens, C clips cut into N >= C encoder windows, S audio spans; S == C except for
DPO):

    input_ids (R, L) long, right-padded with <|endoftext|>; attention_mask (R, L) long
    labels (R, L) long: the token id on assistant content and its <|im_end|>, -100 elsewhere
    input_features (N, mel, F) float32 and feature_attention_mask (N, F) long  [only if C > 0]: one row
        per encoder window, a clip's windows consecutive and in order (see "Long audio"); F is the
        longest window's mel frames + 2, rounded up to a multiple of 4 (lalm.models.encoder), or the
        full window with trim_audio=False (what stock transformers' encoder accepts)
    clip_windows (C,) long: how many of those rows each clip has (1 for a clip within the window)
    audio_clip_index (S,) long: which clip fills the s-th audio span, spans in row-major order
    ids: the E kept examples' ids in row order, a placeholder's (PLACEHOLDER_ID) included; real_ids(batch)
        leaves it out
    dropped: [{"id", "source", "reason", "file", "detail"}] for examples left out (see below)
    reference_logps (2P,) float32 [DPO, only if the examples carry "reference_logps" (chosen, rejected):
        the reference log-probs cached by lalm.training.reference_cache], in row order; 0 for a placeholder
    example_weights (E,) float: each kept example's "weight" (default 1.0; 0 marks evaluation padding
        and placeholders)
    placeholders: int, 0 or 1: weight-0 placeholder examples, the last of the E (see below)
    tasks (conversation collators): the E examples' "task" (pretraining) or None, in row order
    placeholder_tokens: int, the attention-mask tokens of their rows (attention_mask.sum() minus this
        is the real examples' tokens; real_token_count(batch))

With CollatorConfig(pack=True) the rows are then laid end to end without padding (lalm.data.packing:
input_ids (1, T) plus position_ids, sequence_index and num_rows).

Long audio: a clip longer than the encoder's window (feature_extractor.n_samples: 30 s for Qwen2-Audio)
is cut into consecutive windows, each starting window - overlap samples after the previous
(CollatorConfig.long_audio_overlap_s), the last one shorter. Each window is its own row of
input_features, its log-mels computed on that slice alone, and the clip's ONE audio span holds the
tokens of all its windows in order: a 19-s clip with 6-s windows is
"Audio 1: <|audio_bos|>" + 475 x <|AUDIO|> (150 + 150 + 150 + 25) + "<|audio_eos|>". Every window
keeps all its tokens, overlap included, so transformers' own forward (generation) fills the span as
lalm's does; why, and the exact counts: lalm.data.features.

An example is never cut: one longer than max_length, or with a clip longer than max_audio_seconds,
is dropped and reported in `dropped` (cutting inside an audio span is what breaks other tools with
"audio features and audio tokens do not match"). So is a bad-example marker from ManifestDataset
(audio missing, empty, unreadable, truncated, NaN, shorter than its manifest duration): `reason` is
one of DROP_REASONS, `file` the audio file at fault (None when the text is too long), `detail` a
readable why. Evaluation padding (weight 0) is dropped without being reported: it is a repeat.

Placeholders: under ZeRO-2/3 every rank must run the same modules every step, or their collectives
stop matching (a hang on NCCL). A training or evaluation batch without any clip (text-only SFT turns,
or every example dropped) therefore gets a placeholder: a 0.1-s silent clip in a user turn, weight 0,
no supervised token (DPO: a pair, both rows so). The model's own forward then runs the encoder (and
the CTC head) on every rank, and since nothing of it is supervised and its weight is 0, the loss, the
unit counts and the metrics are those of the real examples. GenerationCollator adds none.

DPO rows are [chosen_0..chosen_B-1, rejected_0..rejected_B-1] (B = num_pairs, placeholder included);
both rows of a pair point at the same clips, so each clip is carried once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import Qwen2AudioProcessor

from lalm.data.audio import AUDIO_REASONS
from lalm.data.chat import DEFAULT_SYSTEM_PROMPT, render_chatml, supervised_mask
from lalm.data.features import ClipFeaturizer, mask_features, span_feature_rows
from lalm.data.packing import IGNORE_INDEX, pack_batch
from lalm.models.tokenizer import ENDOFTEXT

Example = dict[str, Any]
Dropped = dict[str, str | None]

AUDIO_LONGER_THAN_MAX = "audio_longer_than_max_audio_seconds"
LONGER_THAN_MAX_LENGTH = "longer_than_max_length"
# Every reason an example can be left out of a batch: the audio ones (lalm.data.audio) come from
# ManifestDataset's bad-example markers, the other two from the collators' length checks.
DROP_REASONS = (*AUDIO_REASONS, AUDIO_LONGER_THAN_MAX, LONGER_THAN_MAX_LENGTH)
# 10 minutes: 20 of Qwen2-Audio's 30-s windows, 15,000 audio tokens (DataConfig.max_audio_seconds).
MAX_AUDIO_SECONDS = 600.0
PLACEHOLDER_SECONDS = 0.1  # the placeholder's silent clip: 2 audio tokens, negligible encoder work
PLACEHOLDER_ID = "<placeholder>"


@dataclass(frozen=True)
class CollatorConfig:
    max_length: int = 2048
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    pad_to_multiple_of: int = 1
    trim_audio: bool = True
    pack: bool = False  # rows end to end in one padding-free sequence (lalm.data.packing)
    # A clip longer than the encoder's window is cut into windows overlapping by this many seconds
    # (see "Long audio" above); one longer than max_audio_seconds drops its example.
    long_audio_overlap_s: float = 0.0
    max_audio_seconds: float = MAX_AUDIO_SECONDS


@dataclass
class _Row:
    input_ids: list[int]
    labels: list[int]
    num_spans: int


def _audio_items(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for m in messages for item in m["content"] if item["type"] == "audio"]


def _clips(messages: Sequence[dict[str, Any]]) -> list[np.ndarray]:
    return [item["waveform"] for item in _audio_items(messages)]


def _weight(example: Example) -> float:
    return float(example.get("weight", 1.0))


class _BaseCollator:
    def __init__(self, processor: Qwen2AudioProcessor, config: CollatorConfig | None = None) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.feature_extractor = processor.feature_extractor
        self.config = config or CollatorConfig()
        self.pad_id = self.tokenizer.convert_tokens_to_ids(ENDOFTEXT)
        self.featurizer = ClipFeaturizer(
            self.feature_extractor, self.config.long_audio_overlap_s, self.config.trim_audio
        )
        if not self.config.max_audio_seconds > 0:
            raise ValueError(f"max_audio_seconds={self.config.max_audio_seconds}: must be > 0")

    def _token_counts(self, clips: Sequence[np.ndarray]) -> list[int]:
        """Audio tokens per clip: its windows' encoder frames (25 per second), summed (see "Long audio")."""
        return [self.featurizer.token_count(clip) for clip in clips]

    def _audio_of(
        self, example: Example, messages: Sequence[dict[str, Any]], dropped: list[Dropped]
    ) -> tuple[list[np.ndarray], list[int]] | None:
        """(clips, audio tokens per clip) of a usable example; None after reporting a bad marker or a
        clip longer than max_audio_seconds in `dropped`."""
        if "bad" in example:
            bad = example["bad"]
            self._drop(dropped, example, bad["reason"], bad.get("file"), bad.get("detail", ""))
            return None
        items = _audio_items(messages)
        rate, limit = self.feature_extractor.sampling_rate, self.config.max_audio_seconds
        too_long = [item for item in items if len(item["waveform"]) > limit * rate]
        if too_long:
            seconds = len(too_long[0]["waveform"]) / rate
            detail = f"a {seconds:.2f}-s clip; max_audio_seconds is {limit:g}"
            self._drop(dropped, example, AUDIO_LONGER_THAN_MAX, too_long[0].get("file"), detail)
            return None
        clips = [item["waveform"] for item in items]
        return clips, self._token_counts(clips)

    def _row(
        self, messages: Sequence[dict[str, Any]], counts: Sequence[int], generation: bool = False
    ) -> _Row:
        text, spans = render_chatml(messages, counts, self.config.system_prompt, generation)
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = encoded["input_ids"]
        mask = supervised_mask(encoded["offset_mapping"], spans)
        labels = [tok if keep else IGNORE_INDEX for tok, keep in zip(ids, mask, strict=True)]
        return _Row(ids, labels, len(counts))

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

    def _too_long(self, example: Example, rows: Sequence[_Row], dropped: list[Dropped]) -> bool:
        """True (after reporting it) if a row of the example is longer than max_length tokens."""
        longest = max(len(row.input_ids) for row in rows)
        if longest <= self.config.max_length:
            return False
        detail = f"{longest} tokens; max_length is {self.config.max_length}"
        self._drop(dropped, example, LONGER_THAN_MAX_LENGTH, None, detail)
        return True

    @staticmethod
    def _drop(dropped: list[Dropped], example: Example, reason: str, file: str | None, detail: str) -> None:
        """Report a left-out example, unless it is evaluation padding (weight 0: a repeat of a real one)."""
        if _weight(example) <= 0:
            return
        dropped.append(
            {
                "id": str(example["id"]),
                "source": str(example.get("source", "")),
                "reason": reason,
                "file": file,
                "detail": detail,
            }
        )

    def _placeholder(self) -> tuple[_Row, np.ndarray]:
        """A weight-0 stand-in that makes the model run its encoder: one user turn holding a short
        silent clip (no system turn), nothing supervised. -> (row, clip (samples,) float32)."""
        rate = self.feature_extractor.sampling_rate
        clip = np.zeros(int(PLACEHOLDER_SECONDS * rate), dtype=np.float32)
        user = {"role": "user", "content": [{"type": "audio", "waveform": clip}]}
        text, _ = render_chatml([user], self._token_counts([clip]), system_prompt=None)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return _Row(ids, [IGNORE_INDEX] * len(ids), 1), clip


class ConversationCollator(_BaseCollator):
    """Pretrain and SFT: one row per example (single- or multi-turn, chat or analysis mode)."""

    generation = False

    def __call__(self, examples: Sequence[Example]) -> dict[str, Any]:
        rows: list[_Row] = []
        clips: list[np.ndarray] = []
        ids: list[str] = []
        weights: list[float] = []
        tasks: list[str | None] = []
        dropped: list[Dropped] = []
        draws: list[tuple[dict[str, Any], int] | None] = []  # per clip: its example's augmentation
        for example in examples:
            audio = self._audio_of(example, example.get("messages", []), dropped)
            if audio is None:
                continue
            row = self._row(example["messages"], audio[1], self.generation)
            if self._too_long(example, [row], dropped):
                continue
            rows.append(row)
            clips.extend(audio[0])
            augment = example.get("augment")
            draws.extend((augment, number) if augment else None for number in range(len(audio[0])))
            ids.append(str(example["id"]))
            weights.append(_weight(example))
            tasks.append(example.get("task"))
        placeholders = 0
        if not clips and not self.generation:  # see the module docstring: every rank runs the encoder
            row, clip = self._placeholder()
            rows.append(row)
            clips.append(clip)
            ids.append(PLACEHOLDER_ID)
            weights.append(0.0)
            tasks.append(None)
            placeholders = 1
        batch: dict[str, Any] = self._pad(rows, left=self.generation)
        batch.update(self.featurizer(clips))
        mask_features(batch, draws)
        batch["audio_clip_index"] = torch.arange(len(clips), dtype=torch.long)
        batch.update(ids=ids, dropped=dropped, example_weights=torch.tensor(weights, dtype=torch.float32))
        batch.update(tasks=tasks, placeholders=placeholders)
        batch["placeholder_tokens"] = _placeholder_tokens(batch)
        return pack_batch(batch) if self.config.pack and not self.generation else batch


class PreferenceCollator(_BaseCollator):
    """DPO: a chosen and a rejected row per prompt; the prompt's clips are carried once per pair."""

    def __call__(self, examples: Sequence[Example]) -> dict[str, Any]:
        chosen: list[_Row] = []
        rejected: list[_Row] = []
        clips: list[np.ndarray] = []
        clip_index: list[list[int]] = []
        ids: list[str] = []
        weights: list[float] = []
        references: list[tuple[float, float] | None] = []
        dropped: list[Dropped] = []
        for example in examples:
            audio = self._audio_of(example, example.get("prompt", []), dropped)
            if audio is None:
                continue
            pair = [
                self._row([*example["prompt"], _assistant(example[side])], audio[1])
                for side in ("chosen", "rejected")
            ]
            if self._too_long(example, pair, dropped):
                continue
            chosen.append(pair[0])
            rejected.append(pair[1])
            clip_index.append(list(range(len(clips), len(clips) + len(audio[0]))))
            clips.extend(audio[0])
            ids.append(str(example["id"]))
            weights.append(_weight(example))
            references.append(example.get("reference_logps"))
        placeholders = 0
        if not clips:  # a placeholder pair (see the module docstring): both rows the silent prompt
            row, clip = self._placeholder()
            chosen.append(row)
            rejected.append(row)
            clip_index.append([len(clips)])
            clips.append(clip)
            ids.append(PLACEHOLDER_ID)
            weights.append(0.0)
            references.append((0.0, 0.0))
            placeholders = 1
        batch: dict[str, Any] = self._pad(chosen + rejected)
        batch.update(self.featurizer(clips))
        flat = [i for spans in clip_index for i in spans]
        batch["audio_clip_index"] = torch.tensor(flat + flat, dtype=torch.long)
        batch.update(num_pairs=len(chosen), ids=ids, dropped=dropped, placeholders=placeholders)
        batch["example_weights"] = torch.tensor(weights, dtype=torch.float32)
        batch["placeholder_tokens"] = _placeholder_tokens(batch)
        if any(ref is not None for ref in references[: len(references) - placeholders]):
            batch["reference_logps"] = _reference_rows(references, ids)
        return pack_batch(batch) if self.config.pack else batch


def _reference_rows(references: list[tuple[float, float] | None], ids: list[str]) -> torch.Tensor:
    """Cached reference log-probs in row order: (2P,) float32, [chosen_0..chosen_P-1, rejected_0...]."""
    missing = [i for i, ref in zip(ids, references, strict=True) if ref is None]
    if missing:
        raise ValueError(f"examples {missing} carry no reference_logps while others of the batch do")
    chosen = [ref[0] for ref in references if ref is not None]
    rejected = [ref[1] for ref in references if ref is not None]
    return torch.tensor(chosen + rejected, dtype=torch.float32)


class GenerationCollator(ConversationCollator):
    """Prompts for generation: each example's messages end with a user turn; the assistant header is
    appended and rows are left-padded (new tokens follow the prompt). Labels are all -100. No
    placeholder: a batch whose examples were all dropped has 0 rows, and the caller skips it."""

    generation = True


def _assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def placeholder_rows(batch: dict[str, Any]) -> torch.Tensor:
    """(R,) bool: the rows that belong to placeholder examples (the last example; DPO: both its rows)."""
    rows = batch["input_ids"].shape[0]
    mask = torch.zeros(rows, dtype=torch.bool)
    count = int(batch.get("placeholders", 0))
    if count:
        pairs = batch.get("num_pairs")
        ends = (pairs, 2 * pairs) if pairs is not None else (rows,)
        for end in ends:
            mask[end - count : end] = True
    return mask


def real_ids(batch: dict[str, Any]) -> list[str]:
    """The ids of the batch's real examples: `ids` without the trailing placeholder."""
    return list(batch["ids"][: len(batch["ids"]) - int(batch.get("placeholders", 0))])


def _placeholder_tokens(batch: dict[str, Any]) -> int:
    return int(batch["attention_mask"][placeholder_rows(batch)].sum())


def real_token_count(batch: dict[str, Any]) -> int:
    """Attention-mask tokens of the real examples' rows: attention_mask.sum() without placeholders."""
    real = ~placeholder_rows(batch).to(batch["attention_mask"].device)
    return int(batch["attention_mask"][real].sum())


def model_inputs(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Arguments for Qwen2AudioForConditionalGeneration.forward.

    The model wants the feature rows of every audio span in span order (it fills the audio tokens
    with each row's real frames, row after row), so clips shared by several rows (DPO) are repeated
    here and a long clip brings all its windows; a stage that encodes each clip once uses
    `audio_clip_index` and `clip_windows` directly instead.
    """
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if "input_features" in batch:
        rows = span_feature_rows(batch["audio_clip_index"], batch.get("clip_windows"))
        inputs["input_features"] = batch["input_features"][rows]
        inputs["feature_attention_mask"] = batch["feature_attention_mask"][rows]
    return inputs
