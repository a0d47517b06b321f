"""ChatML rendering and token counts, by example."""

from __future__ import annotations

import pytest

from lalm.data.chat import audio_token_count, mel_frame_count, render_chatml, supervised_mask


@pytest.mark.parametrize(("seconds", "tokens"), [(30.0, 750), (1.0, 25), (0.04, 1), (2.5, 62), (6.0, 150)])
def test_audio_token_count_matches_the_report(seconds, tokens):
    # 25 tokens per second; 750 for the 30 s window (the Qwen2-Audio report). 2.5 s: 250 frames -> conv 125 -> pool 62.
    assert audio_token_count(mel_frame_count(int(seconds * 16000))) == tokens


def test_render_chatml_by_example():
    messages = [
        {"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": "Q1"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A1"}]},
        {"role": "user", "content": [{"type": "text", "text": "Q2"}, {"type": "audio"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A2"}]},
    ]
    text, spans = render_chatml(messages, [2, 1])
    expected = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nAudio 1: <|audio_bos|><|AUDIO|><|AUDIO|><|audio_eos|>\nQ1<|im_end|>\n"
        "<|im_start|>assistant\nA1<|im_end|>\n"
        "<|im_start|>user\nQ2Audio 2: <|audio_bos|><|AUDIO|><|audio_eos|>\n<|im_end|>\n"
        "<|im_start|>assistant\nA2<|im_end|>\n"
    )
    assert text == expected
    assert [text[s:e] for s, e in spans] == ["A1<|im_end|>", "A2<|im_end|>"]


def test_render_without_system_prompt_and_count_mismatch():
    messages = [{"role": "user", "content": [{"type": "audio"}]}]
    text, spans = render_chatml(messages, [1], system_prompt=None)
    assert text.startswith("<|im_start|>user\nAudio 1:") and spans == []
    with pytest.raises(ValueError, match="1 audio items"):
        render_chatml(messages, [1, 2])


def test_supervised_mask_uses_overlap():
    offsets = [(0, 3), (3, 5), (5, 8), (8, 10)]
    assert supervised_mask(offsets, [(4, 8)]) == [False, True, True, False]
