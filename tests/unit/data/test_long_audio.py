"""Clips longer than the encoder's window: cut into windows whose tokens fill ONE audio span, in order,
through collation, the training forward (CTC and DPO's encode-once included) and generation."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import Qwen2AudioProcessor

from lalm.config.eval import GenerationConfig
from lalm.data.audio import AudioRef, load_audio, split_windows, window_starts, write_audio
from lalm.data.chat import audio_token_count, mel_frame_count
from lalm.data.collators import (
    CollatorConfig,
    ConversationCollator,
    PreferenceCollator,
    model_inputs,
)
from lalm.data.dataset import ManifestDataset
from lalm.data.features import span_feature_rows
from lalm.eval.generation import generate_predictions
from lalm.losses.full_logits import sequence_logps
from lalm.models.builders import build_feature_extractor
from lalm.models.tokenizer import AUDIO, AUDIO_BOS, AUDIO_EOS, SPECIAL_TOKENS
from lalm.models.training import AudioLanguageModel, build_ctc_head, encode_batch, forward_batch
from lalm.stages.ctc import ctc_loss_sum, ctc_targets
from lalm.stages.lm import LanguageModelingStage

SR = 16_000
LONG_S = 19.2  # 3.2 windows of the tiny model's 6 s (TinyModelConfig.window_seconds)
SENTENCES = [
    "Anna goes to the market on Monday.",
    "The weather is very cold today.",
    "What is three plus four?",
]


def _tone(seconds: float, hz: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 19.2-s 16-kHz PCM16 WAV: espeak-ng sentences with a tone after each, repeated to length."""
    folder = tmp_path_factory.mktemp("long_audio")
    pieces = []
    for i, sentence in enumerate(SENTENCES):
        raw = folder / f"sentence{i}.wav"
        subprocess.run(["espeak-ng", "-v", "en", "-w", str(raw), sentence], check=True, capture_output=True)
        pieces += [load_audio(AudioRef(str(raw))), _tone(0.5, 300.0 + 150 * i)]
    once = np.concatenate(pieces)
    wave = np.tile(once, -(-int(LONG_S * SR) // len(once)))[: int(LONG_S * SR)]
    path = folder / "long.wav"
    assert write_audio(path, wave) == LONG_S
    return path


def _pretrain_dataset(tmp_path: Path, wav: Path, short: Path | None = None) -> ManifestDataset:
    """A pretraining manifest: the long clip (ASR), and optionally a short one after it."""
    asr = {"task": "asr", "language": "en"}
    records = [{"id": "long", "audio": {"path": str(wav), "duration": LONG_S}, **asr, "text": "Anna."}]
    if short is not None:
        records.append({"id": "short", "audio": {"path": str(short)}, **asr, "text": "Hi."})
    manifest = tmp_path / "pretrain.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    return ManifestDataset.from_manifest(str(manifest), "pretrain")


def _short_wav(tmp_path: Path, seconds: float = 1.3) -> Path:
    path = tmp_path / "short.wav"
    write_audio(path, _tone(seconds, 500.0))
    return path


def _span_lengths(batch: dict, processor) -> list[list[int]]:  # noqa: ANN001
    """Per row, the <|AUDIO|> run of each <|audio_bos|> ... <|audio_eos|> span; asserts nothing else
    lies between the two and no <|AUDIO|> lies outside a span."""
    ids = processor.tokenizer.convert_tokens_to_ids([AUDIO_BOS, AUDIO, AUDIO_EOS])
    out = []
    for row in batch["input_ids"].tolist():
        starts = [i for i, t in enumerate(row) if t == ids[0]]
        ends = [i for i, t in enumerate(row) if t == ids[2]]
        assert len(starts) == len(ends)
        spans = []
        for start, end in zip(starts, ends, strict=True):
            assert all(t == ids[1] for t in row[start + 1 : end])
            spans.append(end - start - 1)
        assert sum(spans) == row.count(ids[1])
        out.append(spans)
    return out


# ------------------------------------------------------------------- windows of a clip


def test_window_starts_by_example() -> None:
    window = 6 * SR
    assert window_starts(window, window) == [0]  # exactly one window
    assert window_starts(window + 1, window) == [0, window]  # one sample more: a 1-sample window
    assert window_starts(int(19 * SR), window) == [0, 6 * SR, 12 * SR, 18 * SR]
    assert window_starts(int(19 * SR), window, overlap=SR) == [0, 5 * SR, 10 * SR, 15 * SR]
    wave = np.arange(int(19 * SR), dtype=np.float32)
    pieces = split_windows(wave, window, overlap=SR)
    assert [len(p) for p in pieces] == [6 * SR, 6 * SR, 6 * SR, 4 * SR]
    assert pieces[1][0] == 5 * SR and pieces[-1][-1] == wave[-1]  # consecutive, the end reached
    for overlap in (-1, window):
        with pytest.raises(ValueError, match="need 0 <= overlap < window"):
            window_starts(10, window, overlap)


# ------------------------------------------------------------------- collation


def _assert_window_features(batch: dict, row: int, window: np.ndarray, extractor) -> None:  # noqa: ANN001
    """Row `row` of the batch is the feature extractor's output for `window` alone (as a clip)."""
    reference = extractor(
        window, sampling_rate=SR, padding="max_length", return_attention_mask=True, return_tensors="pt"
    )
    frames = mel_frame_count(len(window))
    assert int(batch["feature_attention_mask"][row].sum()) == frames
    assert int(reference["attention_mask"][0].sum()) == frames
    torch.testing.assert_close(
        batch["input_features"][row, :, :frames], reference["input_features"][0, :, :frames]
    )


@pytest.mark.parametrize(
    "overlap_s, windows_s, tokens",
    [
        (0.0, [6, 6, 6, 1.2], 150 + 150 + 150 + 30),  # 1.2 s: 120 mel frames -> 30 tokens
        (1.0, [6, 6, 6, 4.2], 150 + 150 + 150 + 105),  # windows start at 0, 5, 10, 15 s
    ],
)
def test_long_clip_fills_one_span_with_all_its_windows(
    processor, long_wav, tmp_path, overlap_s, windows_s, tokens
) -> None:  # noqa: ANN001
    dataset = _pretrain_dataset(tmp_path, long_wav)
    collator = ConversationCollator(processor, CollatorConfig(long_audio_overlap_s=overlap_s))
    batch = collator([dataset[0]])
    assert batch["dropped"] == [] and batch["ids"] == ["long"]
    assert batch["clip_windows"].tolist() == [4] and batch["input_features"].shape[0] == 4
    assert _span_lengths(batch, processor) == [[tokens]]  # one span, every window's tokens
    wave = dataset[0]["messages"][0]["content"][0]["waveform"]
    windows = split_windows(wave, 6 * SR, round(overlap_s * SR))
    assert [len(w) / SR for w in windows] == windows_s
    assert sum(audio_token_count(mel_frame_count(len(w))) for w in windows) == tokens
    for row, window in enumerate(windows):
        _assert_window_features(batch, row, window, processor.feature_extractor)
    assert model_inputs(batch)["input_features"].shape[0] == 4  # the stock forward gets every window


def test_95_s_clip_in_qwen2_audios_30_s_window(processor, long_wav) -> None:  # noqa: ANN001
    """Qwen2-Audio's front end: 95 s = 30 + 30 + 30 + 5 s -> 750 x 3 + 125 = 2,375 tokens, which is
    the one-window formula for 95 s too (no overlap, a window of 3,000 mel frames)."""
    extractor = build_feature_extractor(window_seconds=30)
    qwen = Qwen2AudioProcessor(feature_extractor=extractor, tokenizer=processor.tokenizer)
    wave = load_audio(AudioRef(str(long_wav)))
    wave = np.tile(wave, 5)[: 95 * SR]
    example = {
        "id": "95s",
        "messages": [
            {"role": "user", "content": [{"type": "audio", "waveform": wave}]},
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        ],
    }
    batch = ConversationCollator(qwen, CollatorConfig(max_length=4096))([example])
    assert batch["dropped"] == [] and batch["ids"] == ["95s"]
    assert _span_lengths(batch, qwen) == [[2375]] == [[audio_token_count(mel_frame_count(95 * SR))]]
    assert batch["clip_windows"].tolist() == [4] and batch["input_features"].shape[1:] == (128, 3000)
    for row, start in enumerate((0, 30, 60, 90)):
        _assert_window_features(batch, row, wave[start * SR : (start + 30) * SR], extractor)


def _message(wave: np.ndarray, text: str = "What is said?") -> list[dict]:
    return [
        {"role": "user", "content": [{"type": "audio", "waveform": wave}, {"type": "text", "text": text}]}
    ]


def test_mixed_batch_orders_windows_clip_by_clip(processor, long_wav) -> None:  # noqa: ANN001
    long = load_audio(AudioRef(str(long_wav)))
    short = _tone(1.0, 440.0)
    conversation = [
        {
            "id": "a",
            "messages": [*_message(short), {"role": "assistant", "content": [{"type": "text", "text": "x"}]}],
        },
        {
            "id": "b",
            "messages": [*_message(long), {"role": "assistant", "content": [{"type": "text", "text": "y"}]}],
        },
    ]
    batch = ConversationCollator(processor)(conversation)
    assert batch["clip_windows"].tolist() == [1, 4] and batch["audio_clip_index"].tolist() == [0, 1]
    assert span_feature_rows(batch["audio_clip_index"], batch["clip_windows"]).tolist() == [0, 1, 2, 3, 4]
    assert _span_lengths(batch, processor) == [[25], [480]]
    pairs = [
        {"id": "p", "prompt": _message(long), "chosen": "yes", "rejected": "no"},
        {"id": "q", "prompt": _message(short), "chosen": "yes", "rejected": "no"},
    ]
    batch = PreferenceCollator(processor)(pairs)
    assert batch["clip_windows"].tolist() == [4, 1] and batch["input_features"].shape[0] == 5  # carried once
    assert batch["audio_clip_index"].tolist() == [0, 1, 0, 1]
    rows = span_feature_rows(batch["audio_clip_index"], batch["clip_windows"])
    assert rows.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    assert _span_lengths(batch, processor) == [[480], [25], [480], [25]]
    # The documented example: a clip of 3 windows filling two of three spans.
    assert span_feature_rows(torch.tensor([1, 0, 1]), torch.tensor([1, 3])).tolist() == [1, 2, 3, 0, 1, 2, 3]


def test_clip_longer_than_max_audio_seconds_is_dropped_and_counted(processor, long_wav, tmp_path) -> None:  # noqa: ANN001
    dataset = _pretrain_dataset(tmp_path, long_wav, _short_wav(tmp_path))
    batch = ConversationCollator(processor, CollatorConfig(max_audio_seconds=19.0))([dataset[0], dataset[1]])
    assert batch["ids"] == ["short"] and batch["clip_windows"].tolist() == [1]
    assert batch["dropped"] == [
        {
            "id": "long",
            "source": f"{tmp_path / 'pretrain.jsonl'}:1",
            "reason": "audio_longer_than_max_audio_seconds",
            "file": str(long_wav),
            "detail": "a 19.20-s clip; max_audio_seconds is 19",
        }
    ]
    kept = ConversationCollator(processor, CollatorConfig(max_audio_seconds=19.2))([dataset[0]])
    assert kept["ids"] == ["long"] and kept["dropped"] == []  # the limit itself is allowed
    with pytest.raises(
        ValueError,
        match=r"long_audio_overlap_s=6.0: must be >= 0 and shorter than the encoder's window \(6 s\)",
    ):
        ConversationCollator(processor, CollatorConfig(long_audio_overlap_s=6.0))
    with pytest.raises(ValueError, match="max_audio_seconds=0.0: must be > 0"):
        ConversationCollator(processor, CollatorConfig(max_audio_seconds=0.0))


# ------------------------------------------------------------------- model: training forward, CTC, DPO


def _windows_one_by_one(model: AudioLanguageModel, batch: dict) -> torch.Tensor:
    """The obvious path: each window encoded alone, their real frames concatenated: (frames, d)."""
    parts = []
    for row in range(batch["input_features"].shape[0]):
        mask = batch["feature_attention_mask"][row : row + 1]
        frames = int(mask.sum())
        keep = -(-(frames + 2) // 4) * 4  # this window's own trimmed length (lalm.models.encoder)
        encoded = model.encode(batch["input_features"][row : row + 1, :, :keep], mask[:, :keep])
        parts.append(encoded.states[0, : int(encoded.lengths[0])])
    return torch.cat(parts)


def test_encoded_long_clip_is_its_windows_end_to_end(tiny, long_wav, tmp_path) -> None:  # noqa: ANN001
    model, processor = tiny
    ours = AudioLanguageModel(model).eval()
    dataset = _pretrain_dataset(tmp_path, long_wav, _short_wav(tmp_path))
    batch = ConversationCollator(processor)([dataset[1], dataset[0]])  # short clip first, then the long one
    with torch.no_grad():
        encoded = ours.encode(batch["input_features"], batch["feature_attention_mask"], batch["clip_windows"])
        expected = _windows_one_by_one(ours, batch)
    assert encoded.lengths.tolist() == [32, 480]  # 1.3 s: 130 mel frames -> 32 tokens
    assert encoded.states.shape[:2] == (2, 480)
    torch.testing.assert_close(encoded.states[0, :32], expected[:32], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(encoded.states[1], expected[32:], rtol=1e-5, atol=1e-5)
    assert not encoded.states[0, 32:].any()  # zero past the short clip's frames


def test_long_clip_scores_like_the_stock_forward_and_trains(tiny, long_wav, tmp_path) -> None:  # noqa: ANN001
    """lalm's forward (windows merged per clip) equals transformers' (feature rows in span order), and
    a pretraining step with CTC on the long clip runs forward and backward with a finite loss."""
    model, processor = tiny
    model = copy.deepcopy(model)
    dataset = _pretrain_dataset(tmp_path, long_wav, _short_wav(tmp_path))
    batch = ConversationCollator(processor)([dataset[0], dataset[1]])
    assert _span_lengths(batch, processor) == [[480], [32]]
    ours = AudioLanguageModel(model, build_ctc_head(model)).train()
    with torch.no_grad():
        stock = sequence_logps(model(**model_inputs(batch), use_cache=False).logits, batch["labels"])[0]
        torch.testing.assert_close(
            forward_batch(ours, batch).supervised.sequence_logps()[0], stock, rtol=1e-5, atol=1e-4
        )

    special = tuple(processor.tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)))
    stage = LanguageModelingStage("pretrain", ctc_weight=0.5, special_ids=special)
    out = stage.forward(ours, batch)
    assert torch.isfinite(out.loss) and out.units == stage.count_units(batch) > 0
    # The CTC loss of the long clip runs over its 480 merged frames: recomputed by hand from the
    # windows encoded one by one.
    with torch.no_grad():
        frames = _windows_one_by_one(ours, batch)  # (480 + 32, d): the long clip's, then the short one's
        targets = ctc_targets(batch, set(special))
        expected = sum(
            ctc_loss_sum(ours.ctc_head(part)[None], torch.tensor([len(part)]), [target], special[0])
            for part, target in zip((frames[:480], frames[480:]), targets, strict=True)
        )
    torch.testing.assert_close(out.metrics["ctc"], expected, rtol=1e-4, atol=1e-3)
    out.loss.backward()
    conv = ours.base.model.audio_tower.conv1.weight.grad
    assert conv is not None and torch.isfinite(conv).all() and conv.abs().sum() > 0
    assert ours.ctc_head.weight.grad is not None and ours.ctc_head.weight.grad.abs().sum() > 0


def test_packed_batch_with_a_long_clip_scores_like_the_padded_one(tiny, long_wav, tmp_path) -> None:  # noqa: ANN001
    model, processor = tiny
    ours = AudioLanguageModel(model).eval()
    dataset = _pretrain_dataset(tmp_path, long_wav, _short_wav(tmp_path))
    examples = [dataset[1], dataset[0]]
    padded = ConversationCollator(processor)(examples)
    packed = ConversationCollator(processor, CollatorConfig(pack=True))(examples)
    assert packed["input_ids"].shape[0] == 1 and packed["clip_windows"].tolist() == [1, 4]
    with torch.no_grad():
        expected = forward_batch(ours, padded).supervised.sequence_logps()[0]
        got = forward_batch(ours, packed).supervised.sequence_logps()[0]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)


def test_dpo_encode_once_on_a_long_clip(tiny, long_wav) -> None:  # noqa: ANN001
    """DPO's shared encoding (encode_batch, per clip) scores a long prompt clip as the per-row path and
    the stock forward do."""
    model, processor = tiny
    long = load_audio(AudioRef(str(long_wav)))
    pairs = [
        {"id": "p", "prompt": _message(long), "chosen": "Anna goes to the market.", "rejected": "Anna."},
        {"id": "q", "prompt": _message(_tone(1.0, 440.0)), "chosen": "A tone.", "rejected": "Speech."},
    ]
    batch = PreferenceCollator(processor)(pairs)
    ours = AudioLanguageModel(model).eval()
    with torch.no_grad():
        encoded = encode_batch(ours, batch)
        assert encoded.lengths.tolist() == [480, 25]
        shared = forward_batch(ours, batch, encoded=encoded).supervised.sequence_logps()[0]
        own = forward_batch(ours, batch).supervised.sequence_logps()[0]
        stock = sequence_logps(model(**model_inputs(batch), use_cache=False).logits, batch["labels"])[0]
    torch.testing.assert_close(shared, own, rtol=0, atol=0)
    torch.testing.assert_close(shared, stock, rtol=1e-5, atol=1e-4)


# ------------------------------------------------------------------- generation


def test_generation_on_a_long_clip(tiny, long_wav, tmp_path) -> None:  # noqa: ANN001
    """generate_predictions (transformers' generate through GenerationCollator) on the long clip next
    to a short one: the encoder gets the long clip's 4 windows and the short clip, nothing is dropped."""
    model, processor = tiny
    dataset = _pretrain_dataset(tmp_path, long_wav, _short_wav(tmp_path))
    examples = [dataset[0], dataset[1]]
    for example in examples:
        example["messages"] = example["messages"][:-1]  # the prompt: up to the user turn
    rows: list[int] = []
    tower = model.model.audio_tower
    handle = tower.register_forward_hook(lambda module, args, out: rows.append(args[0].shape[0]))
    try:
        generated = generate_predictions(model, processor, examples, 2, GenerationConfig(max_new_tokens=4))
    finally:
        handle.remove()
    assert generated.dropped == [] and set(generated.predictions) == {"long", "short"}
    assert all(isinstance(text, str) for text in generated.predictions.values())
    assert rows == [5]  # encoded once, with the prompt; the next tokens reuse the cache
