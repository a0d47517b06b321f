"""The encoder's inputs for a batch's clips: log-mels per encoder window, cut to the batch's length.

A clip within the encoder's window (feature_extractor.n_samples: 30 s for Qwen2-Audio) is one row of
input_features, as transformers' processor makes it. A longer clip is cut into consecutive windows
(lalm.data.audio.window_starts: each starts `window - overlap` samples after the previous, the last
one shorter) and each window is one row, its log-mels computed on that slice alone, exactly as the
feature extractor computes a clip of that length. The clip's audio tokens are its windows' tokens end
to end, every window keeping all of its own (overlap included):

    19-s clip, 6-s window, no overlap  -> windows 6, 6, 6, 1 s -> 150 + 150 + 150 + 25 = 475 tokens
    19-s clip, 6-s window, 1-s overlap -> windows 6, 6, 6, 4 s -> 150 + 150 + 150 + 100 = 550 tokens

Why keep the overlap's tokens rather than drop them from the later window: transformers' own forward
(used for generation, and by anyone loading final/) fills an audio span with each feature row's first
`audio_token_count(mask.sum())` frames, row after row; it cannot skip a row's leading frames. Keeping
whole windows gives the same tokens in training, evaluation and generation, with lalm's forward or
the stock one. An overlap thus shows its audio twice (once at the end of a window, once at the start
of the next), which is what it is for: a word cut at a window's edge is heard whole in one of them.
With no overlap (the default) the count equals the one-window formula for the whole clip whenever the
window is a multiple of 4 mel frames (30 s: 3,000), so a long clip costs 25 tokens per second as a
short one does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import WhisperFeatureExtractor

from lalm.data.audio import split_windows
from lalm.data.augment import FEATURE_STREAM, clip_rng, spec_augment
from lalm.data.chat import audio_token_count, mel_frame_count
from lalm.models.encoder import trim_features, trimmed_length


class ClipFeaturizer:
    """Clips (samples,) float32 at the extractor's rate -> encoder windows, token counts, features."""

    def __init__(self, extractor: WhisperFeatureExtractor, overlap_s: float = 0.0, trim: bool = True) -> None:
        self.extractor = extractor
        self.trim = trim
        rate, window = extractor.sampling_rate, extractor.n_samples
        self.overlap = round(overlap_s * rate)
        if not 0 <= self.overlap < window:
            raise ValueError(
                f"long_audio_overlap_s={overlap_s}: must be >= 0 and shorter than the encoder's window "
                f"({window / rate:g} s)"
            )

    def windows(self, clip: np.ndarray) -> list[np.ndarray]:
        """The clip's encoder windows, in order; the clip itself when it fits the window."""
        return split_windows(clip, self.extractor.n_samples, self.overlap)

    def token_count(self, clip: np.ndarray) -> int:
        """Audio tokens of the clip's span: each window's encoder frames (25 per second), summed."""
        hop = self.extractor.hop_length
        return sum(audio_token_count(mel_frame_count(len(window), hop)) for window in self.windows(clip))

    def __call__(self, clips: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """input_features (N, mel, F) float32, feature_attention_mask (N, F) long (one row per window,
        a clip's windows consecutive, clips in order) and clip_windows (C,) long; {} without clips."""
        if not clips:
            return {}
        per_clip = [self.windows(clip) for clip in clips]
        features = self.window_features([window for windows in per_clip for window in windows])
        features["clip_windows"] = torch.tensor([len(windows) for windows in per_clip], dtype=torch.long)
        return features

    def window_features(self, windows: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """Log-mels of clips within the window, one row each: (N, mel, F) and mask (N, F)."""
        extractor = self.extractor
        samples = extractor.n_samples
        if self.trim:
            # Log-mels only as far as the cut reaches: frame i reads samples up to i x hop + n_fft / 2, so
            # padding to that many samples gives the kept frames exactly as the full window would (the
            # per-clip maximum the extractor clamps against comes from the clip, not its padding).
            longest = max(mel_frame_count(len(window), extractor.hop_length) for window in windows)
            frames = trimmed_length(torch.tensor([longest]), extractor.nb_max_frames)
            reach = frames + -(-(extractor.n_fft // 2) // extractor.hop_length)
            samples = min(samples, reach * extractor.hop_length)
        out = extractor(
            list(windows),
            sampling_rate=extractor.sampling_rate,
            padding="max_length",
            max_length=samples,
            return_attention_mask=True,
            return_tensors="pt",
        )
        features, mask = out["input_features"].float(), out["attention_mask"].long()
        if self.trim:
            # A clip's frames do not depend on which clips share its batch (tested against the full window).
            features, mask = trim_features(features, mask)
        return {"input_features": features, "feature_attention_mask": mask}


def span_feature_rows(
    audio_clip_index: torch.Tensor, clip_windows: torch.Tensor | None = None
) -> torch.Tensor:
    """(N_S,) long: the feature rows (windows) in the order their frames fill the audio tokens: each
    span's clip's windows, span after span. clip_windows None (a hand-made batch): one row per clip.

    Example: clip_windows [1, 3], audio_clip_index [1, 0, 1] -> [1, 2, 3, 0, 1, 2, 3].
    """
    if clip_windows is None:
        return audio_clip_index
    device = audio_clip_index.device
    counts = clip_windows.to(device)
    first = torch.cumsum(counts, 0) - counts  # (C,) each clip's first row
    per_span = counts[audio_clip_index]  # (S,) windows of each span's clip
    span_start = torch.cumsum(per_span, 0) - per_span
    span_of = torch.repeat_interleave(torch.arange(len(audio_clip_index), device=device), per_span)
    within = torch.arange(len(span_of), device=device) - span_start[span_of]
    return first[audio_clip_index][span_of] + within


def mask_features(batch: dict[str, Any], draws: Sequence[tuple[dict[str, Any], int] | None]) -> None:
    """SpecAugment, in place, on the feature rows of the clips of augmented training examples.

    draws: per clip (in batch order), None or (the example's "augment" entry {"seed", "position",
    "config"}, the clip's number in its example). Window w of clip c draws from (seed, position, c)'s
    feature stream w, so the masks are a pure function of the sample position (lalm.data.augment)."""
    if not any(draws):
        return
    features, mask = batch["input_features"], batch["feature_attention_mask"]
    row = 0
    for draw, windows in zip(draws, batch["clip_windows"].tolist(), strict=False):
        for window in range(windows):
            if draw is not None:
                augment, clip = draw
                rng = clip_rng(augment["seed"], augment["position"], clip, FEATURE_STREAM + window)
                real = int(mask[row].sum())
                features[row] = spec_augment(features[row], real, augment["config"], rng)
            row += 1
