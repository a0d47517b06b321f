"""The audio encoder on the batch's real audio length instead of the full window.

transformers' Qwen2AudioEncoder.forward only accepts features exactly as long as its window (30 s for
Qwen2-Audio, `max_source_positions` x 2 mel frames), so a 2-s clip costs as much as a 30-s one. Padded
frames are masked out of the encoder's attention anyway, so cutting the window to the longest clip of
the batch (plus two frames, which the convolutions at its end still read) leaves every real position's
output unchanged up to float rounding; only the cost drops. No library does this for Qwen2-Audio, hence
this forward; the layers it runs are transformers' own, and the saved model is unchanged (stock
transformers with full-window features gives the same outputs, see tests/unit/models/test_encoder.py).

A clip longer than the window reaches the encoder as several rows, one per window (lalm.data.features);
merge_windows lays each clip's windows' output frames end to end, so what follows (filling audio
spans, the CTC head) sees one sequence per clip.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import nn
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import BaseModelOutput

# Frames kept after the longest clip: conv1's last real output reads one frame further, and conv2
# (kernel 3, stride 2) one more conv1 output, so two padded frames make the real outputs exact.
EDGE_FRAMES = 2
# The window cut is a multiple of 4 mel frames: conv2 halves it and the average pool halves it again.
FRAME_MULTIPLE = 4


def trimmed_length(real_frames: torch.Tensor, window_frames: int) -> int:
    """Mel frames to keep for a batch whose clips have `real_frames` (C,) real frames each."""
    longest = int(real_frames.max()) if real_frames.numel() else 0
    needed = -(-(longest + EDGE_FRAMES) // FRAME_MULTIPLE) * FRAME_MULTIPLE
    return min(max(needed, FRAME_MULTIPLE), window_frames)


def trim_features(features: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut full-window features (C, mel, W) and their mask (C, W) to the batch's trimmed length."""
    keep = trimmed_length(attention_mask.sum(-1), features.shape[-1])
    return features[..., :keep].contiguous(), attention_mask[:, :keep].contiguous()


def encoder_attention_mask(
    config: Any, feature_mask: torch.Tensor, dtype: torch.dtype = torch.float32
) -> Any:
    """The attention mask Qwen2AudioModel.forward hands its encoder for (C, T) feature masks: real vs
    padded positions after conv2, which halves the frames. For calling an encoder on its own."""
    lengths = (feature_mask.sum(-1) - 1) // 2 + 1
    positions = (feature_mask.shape[-1] - 2) // 2 + 1
    mask_2d = (torch.arange(positions, device=feature_mask.device)[None, :] < lengths[:, None]).long()
    dummy = torch.zeros(feature_mask.shape[0], positions, 1, dtype=dtype, device=feature_mask.device)
    return create_bidirectional_mask(config=config, inputs_embeds=dummy, attention_mask=mask_2d)


def _length_aware_forward(
    self: Any, input_features: torch.Tensor, attention_mask: Any = None, **kwargs: Any
) -> BaseModelOutput:
    """Qwen2AudioEncoder.forward for the full window or any multiple of 4 mel frames below it.

    input_features (C, mel, T) with T <= 2 x max_source_positions; attention_mask is the mask
    Qwen2AudioModel builds from the feature mask for T/2 positions. -> last_hidden_state (C, ~T/4, d).
    """
    frames = input_features.shape[-1]
    window = self.config.max_source_positions * self.conv1.stride[0] * self.conv2.stride[0]
    if frames > window or (frames % FRAME_MULTIPLE and frames != window):
        raise ValueError(
            f"audio features have {frames} mel frames; the encoder takes a multiple of "
            f"{FRAME_MULTIPLE} up to its window of {window} (pad or trim with lalm.models.encoder)"
        )
    input_features = input_features.to(dtype=self.conv1.weight.dtype, device=self.conv1.weight.device)
    hidden = nn.functional.gelu(self.conv1(input_features))
    hidden = nn.functional.gelu(self.conv2(hidden)).permute(0, 2, 1)
    hidden = hidden + self.embed_positions.weight[: hidden.shape[1]]
    hidden = nn.functional.dropout(hidden, p=self.dropout, training=self.training)
    for layer in self.layers:
        if self.training and self.layerdrop > 0.0 and torch.rand([]) < self.layerdrop:
            continue
        hidden = layer(hidden, attention_mask, **kwargs)
    hidden = self.avg_pooler(hidden.permute(0, 2, 1)).permute(0, 2, 1)
    return BaseModelOutput(last_hidden_state=self.layer_norm(hidden))


def make_length_aware(encoder: nn.Module) -> nn.Module:
    """Give a Qwen2AudioEncoder the forward above (an instance attribute: not saved, not exported)."""
    encoder.forward = types.MethodType(_length_aware_forward, encoder)
    return encoder


def enable_length_aware_encoder(model: nn.Module) -> nn.Module:
    """make_length_aware on the audio encoder of a Qwen2AudioForConditionalGeneration."""
    make_length_aware(model.get_submodule("model.audio_tower"))
    return model


def merge_windows(
    states: torch.Tensor, lengths: torch.Tensor, clip_windows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder outputs per window -> per clip: each clip's windows' real frames end to end.

    states (N, T, d) and real frames lengths (N,) of N windows; clip_windows (C,) windows per clip,
    a clip's windows consecutive and in order (the collators' layout, lalm.data.features).
    -> states (C, T', d), zero past each clip's frames, T' the longest clip's total; lengths (C,).
    With one window per clip (N == C: no clip longer than the window) the inputs come back as they
    are, with no host sync; otherwise T' is read from the device once.
    """
    count, windows = clip_windows.shape[0], states.shape[0]
    if count == windows:
        return states, lengths
    clip_windows = clip_windows.to(states.device)
    real = torch.arange(states.shape[1], device=states.device)[None, :] < lengths[:, None]  # (N, T)
    clip_of = torch.repeat_interleave(
        torch.arange(count, device=states.device), clip_windows, output_size=windows
    )
    clip_lengths = torch.zeros(count, dtype=lengths.dtype, device=states.device).index_add(
        0, clip_of, lengths
    )
    longest = int(clip_lengths.max())
    slots = torch.arange(longest, device=states.device)[None, :] < clip_lengths[:, None]  # (C, T')
    merged = states.new_zeros(count, longest, states.shape[-1])
    # Real frames in row-major order are window after window, clip after clip: the order of the slots.
    return merged.masked_scatter(slots.unsqueeze(-1), states[real]), clip_lengths
