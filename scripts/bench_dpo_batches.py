"""The batches of scripts/bench_dpo.py: random token ids for both sides, in lalm's collator format
for lalm's side (PreferenceCollator's layout, with or without one audio clip per pair).

With audio, a pair's prompt is AUDIO_OFFSET text tokens, the clip's audio tokens, then text tokens to
the workload's P: the LLM sees as many positions per row as TRL's text-only rows, and the number of
audio tokens is audio_token_count(real mel frames), exactly as lalm.data.collators gives it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lalm.data.chat import audio_token_count
from lalm.models.encoder import trimmed_length

MEL_BINS = 128  # Whisper-large-v3's and lalm's feature extractor's
WINDOW_FRAMES = 3000  # the encoder's window: 30 s at 100 mel frames/s (max_source_positions 1500 x 2)
AUDIO_OFFSET = 3  # text tokens before the clip in a prompt (as "<|im_start|>user\n" would be)


@dataclass
class Workload:
    name: str
    pairs: int
    prompt: int
    completion: int

    @property
    def tokens_per_step(self) -> int:
        return 2 * self.pairs * (self.prompt + self.completion)


@dataclass(frozen=True)
class Audio:
    """One clip per pair of `seconds` seconds, as lalm's collator would give it."""

    seconds: float

    @property
    def frames(self) -> int:
        """Real mel frames (10-ms hop)."""
        return round(100 * self.seconds)

    @property
    def tokens(self) -> int:
        """Audio tokens in the prompt: exactly what the encoder + pooling yield for the real frames."""
        return int(audio_token_count(self.frames))

    @property
    def feature_frames(self) -> int:
        """F: the features' length after lalm's trim (a multiple of 4 past the real frames)."""
        return trimmed_length(torch.tensor([self.frames]), WINDOW_FRAMES)

    @property
    def encoder_positions(self) -> int:
        """Encoder positions of the real frames (after conv2's stride 2): 50 per second."""
        return (self.frames - 1) // 2 + 1


def audio_token_id(vocab: int) -> int:
    """The audio placeholder id: below EOS (vocab - 1), and never drawn as a text id (make_pairs)."""
    return vocab - 2


def make_pairs(workload: Workload, steps: int, vocab: int, seed: int) -> dict[str, torch.Tensor]:
    """Random ids for `steps` batches: prompt (S*N, P), chosen and rejected (S*N, C), each ending in EOS.
    Text ids are drawn below audio_token_id(vocab), so only the audio spans lalm writes carry it."""
    generator = torch.Generator().manual_seed(seed)
    rows, high = steps * workload.pairs, audio_token_id(vocab)
    data = {"prompt": torch.randint(0, high, (rows, workload.prompt), generator=generator)}
    for side in ("chosen", "rejected"):
        ids = torch.randint(0, high, (rows, workload.completion), generator=generator)
        ids[:, -1] = vocab - 1
        data[side] = ids
    return data


def lalm_batch(prompt: torch.Tensor, chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, Any]:
    """PreferenceCollator's layout without audio: rows [chosen_0..chosen_N-1, rejected_0..rejected_N-1],
    (2N, P+C) input_ids / attention_mask / labels (-100 on the prompt)."""
    input_ids = torch.cat([torch.cat([prompt, chosen], 1), torch.cat([prompt, rejected], 1)])
    labels = input_ids.clone()
    labels[:, : prompt.shape[1]] = -100
    pairs = prompt.shape[0]
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": labels,
        "num_pairs": pairs,
        "example_weights": torch.ones(pairs),
        "ids": [str(i) for i in range(pairs)],
    }


def add_audio(
    batch: dict[str, Any], audio: Audio, token_id: int, generator: torch.Generator
) -> dict[str, Any]:
    """One clip per pair, as PreferenceCollator gives it: prompt positions [AUDIO_OFFSET,
    AUDIO_OFFSET + audio.tokens) of both rows of a pair become `token_id` (they are prompt, so labels
    stay -100); input_features (N, 128, F) uniform in [-1, 1) (the range of Whisper's normalised
    log-mels), feature_attention_mask (N, F) long, 1 on the first audio.frames frames;
    audio_clip_index (2N,) = [0..N-1, 0..N-1]: chosen and rejected row i share clip i."""
    pairs = batch["num_pairs"]
    input_ids = batch["input_ids"].clone()
    input_ids[:, AUDIO_OFFSET : AUDIO_OFFSET + audio.tokens] = token_id
    mask = torch.zeros(pairs, audio.feature_frames, dtype=torch.long)
    mask[:, : audio.frames] = 1
    features = torch.rand(pairs, MEL_BINS, audio.feature_frames, generator=generator) * 2 - 1
    clips = torch.arange(pairs)
    return {
        **batch,
        "input_ids": input_ids,
        "input_features": features,
        "feature_attention_mask": mask,
        "audio_clip_index": torch.cat([clips, clips]),
    }


def lalm_batches(
    data: dict[str, torch.Tensor], pairs: int, vocab: int, audio: Audio | None, seed: int
) -> list[dict[str, Any]]:
    """lalm's side's batches of `pairs` pairs from make_pairs' `data`, in TRL's order (step k: rows
    k·N .. k·N + N - 1); with `audio`, features from a generator seeded with `seed` + 1."""
    generator = torch.Generator().manual_seed(seed + 1)
    token_id, steps = audio_token_id(vocab), data["prompt"].shape[0] // pairs
    batches = []
    for k in range(steps):
        rows = slice(k * pairs, (k + 1) * pairs)
        batch = lalm_batch(data["prompt"][rows], data["chosen"][rows], data["rejected"][rows])
        batches.append(add_audio(batch, audio, token_id, generator) if audio else batch)
    return batches
