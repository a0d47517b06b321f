"""ChatML rendering with audio spans expanded, and the character spans that carry the loss.

The text is exactly what transformers' Qwen2-Audio chat template renders (tested against it):

    <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n
    <|im_start|>user\nAudio 1: <|audio_bos|><|AUDIO|>...<|AUDIO|><|audio_eos|>\nWhat is said?<|im_end|>\n
    <|im_start|>assistant\nHello.<|im_end|>\n

except that each <|AUDIO|> is already repeated once per encoder frame, as the processor does.
Supervised spans cover each assistant turn's content and its <|im_end|>, nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import torch

from lalm.models.tokenizer import AUDIO, AUDIO_BOS, AUDIO_EOS, IM_END, IM_START

# transformers' Qwen2-Audio template inserts this system turn when the conversation has none.
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

Message = dict[str, Any]
Frames = TypeVar("Frames", int, torch.Tensor)  # a count, or a tensor of counts


def audio_token_count(num_mel_frames: Frames) -> Frames:
    """Encoder output frames for a clip of `num_mel_frames` real mel frames.

    conv2 (stride 2) then the stride-2 average pool: n = (((L - 1) // 2 + 1) - 2) // 2 + 1, the same
    formula as Qwen2AudioProcessor; one token per 40 ms of audio, 25 per second, 750 for 30 s. Works on
    an int or elementwise on a tensor of counts.
    """
    return (((num_mel_frames - 1) // 2 + 1) - 2) // 2 + 1


def mel_frame_count(num_samples: int, hop_length: int = 160) -> int:
    """Real mel frames of a clip padded into a longer window (the feature extractor's attention mask)."""
    return -(-num_samples // hop_length)


def render_chatml(
    messages: Sequence[Message],
    audio_tokens: Sequence[int],
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
    add_generation_prompt: bool = False,
) -> tuple[str, list[tuple[int, int]]]:
    """Render `messages` (items {"type": "audio"|"text", ...}) to ChatML.

    audio_tokens[k] is the number of <|AUDIO|> tokens for the k-th audio item in the conversation.
    Returns (text, supervised character spans [start, end)). `system_prompt=None` adds no system turn;
    `add_generation_prompt` appends "<|im_start|>assistant\n" for the model to continue.
    """
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    length = 0

    def emit(piece: str) -> None:
        nonlocal length
        parts.append(piece)
        length += len(piece)

    if messages and messages[0]["role"] != "system" and system_prompt is not None:
        emit(f"{IM_START}system\n{system_prompt}{IM_END}\n")
    audio_index = 0
    for message in messages:
        emit(f"{IM_START}{message['role']}\n")
        start = length
        for item in message["content"]:
            if item["type"] == "audio":
                audio_index += 1
                emit(f"Audio {audio_index}: {AUDIO_BOS}{AUDIO * audio_tokens[audio_index - 1]}{AUDIO_EOS}\n")
            else:
                emit(item["text"])
        emit(IM_END)
        if message["role"] == "assistant":
            spans.append((start, length))
        emit("\n")
    if add_generation_prompt:
        emit(f"{IM_START}assistant\n")
    if audio_index != len(audio_tokens):
        raise ValueError(f"{audio_index} audio items in the messages but {len(audio_tokens)} token counts")
    return "".join(parts), spans


def supervised_mask(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[bool]:
    """True for each token whose characters overlap a supervised span.

    Overlap (not containment) so a token that straddles a span edge is still supervised: no assistant
    character is ever left without a loss.
    """
    mask = []
    for token_start, token_end in offsets:
        mask.append(any(token_end > start and token_start < end for start, end in spans))
    return mask
