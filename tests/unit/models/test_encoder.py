"""The length-aware encoder forward against transformers' own full-window forward."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import Qwen2AudioEncoderConfig, Qwen2AudioForConditionalGeneration
from transformers.models.qwen2_audio.modeling_qwen2_audio import Qwen2AudioEncoder

from lalm.data.chat import audio_token_count
from lalm.data.collators import CollatorConfig, ConversationCollator, model_inputs
from lalm.data.dataset import ManifestDataset
from lalm.models.encoder import (
    enable_length_aware_encoder,
    encoder_attention_mask,
    make_length_aware,
    merge_windows,
    trim_features,
    trimmed_length,
)


def test_merge_windows_by_hand() -> None:
    """Clip 0 is one window (2 real frames), clip 1 two windows (3 then 1 real frames); T = 3, d = 1."""
    states = torch.tensor([[10.0, 11, -1], [20, 21, 22], [30, -1, -1]])[..., None]  # -1: padding
    lengths = torch.tensor([2, 3, 1])
    merged, merged_lengths = merge_windows(states, lengths, torch.tensor([1, 2]))
    assert merged_lengths.tolist() == [2, 4]
    assert merged[..., 0].tolist() == [[10, 11, 0, 0], [20, 21, 22, 30]]
    # One window per clip: returned as they are (the padding's values included).
    same, same_lengths = merge_windows(states, lengths, torch.tensor([1, 1, 1]))
    assert same is states and same_lengths is lengths
    # Gradients flow to every real frame of every window, and to nothing padded.
    source = states.clone().requires_grad_(True)
    merge_windows(source, lengths, torch.tensor([1, 2]))[0].sum().backward()
    assert source.grad[..., 0].tolist() == [[1, 1, 0], [1, 1, 1], [1, 0, 0]]


def test_trimmed_length_by_hand() -> None:
    # longest 101 real frames: +2 edge frames = 103, rounded up to a multiple of 4 = 104.
    assert trimmed_length(torch.tensor([40, 101, 7]), 400) == 104
    assert trimmed_length(torch.tensor([100]), 400) == 104  # 102 -> 104
    assert trimmed_length(torch.tensor([398]), 400) == 400  # never past the window
    assert trimmed_length(torch.tensor([0]), 400) == 4
    features, mask = torch.randn(2, 8, 400), torch.zeros(2, 400, dtype=torch.long)
    mask[0, :50], mask[1, :30] = 1, 1
    cut, cut_mask = trim_features(features, mask)
    assert cut.shape == (2, 8, 52) and cut_mask.shape == (2, 52)
    assert torch.equal(cut, features[..., :52]) and int(cut_mask.sum()) == 80


def _pretrain_examples(corpus_dir, count: int) -> list[dict]:
    dataset = ManifestDataset.from_manifest(str(corpus_dir / "pretrain" / "train.jsonl"), "pretrain")
    return [dataset[i] for i in range(count)]


def test_trimmed_batch_gives_the_full_window_logits(tiny, corpus_dir) -> None:  # noqa: ANN001
    model, processor = tiny
    examples = _pretrain_examples(corpus_dir, 4)
    full = ConversationCollator(processor, CollatorConfig(trim_audio=False))(examples)
    trimmed = ConversationCollator(processor)(examples)
    window = processor.feature_extractor.nb_max_frames
    assert full["input_features"].shape[-1] == window
    assert trimmed["input_features"].shape[-1] < window  # the corpus' clips are shorter than the window
    assert torch.equal(full["input_ids"], trimmed["input_ids"])
    stock = Qwen2AudioForConditionalGeneration(model.config).eval()  # transformers' own encoder forward
    stock.load_state_dict(model.state_dict(), strict=True)
    aware = enable_length_aware_encoder(copy.deepcopy(model).eval())
    with torch.no_grad():
        expected = stock(**model_inputs(full), use_cache=False).logits
        got = aware(**model_inputs(trimmed), use_cache=False).logits
    keep = full["attention_mask"].bool()
    assert torch.allclose(got[keep], expected[keep], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="expects the mel input features"):
        stock(**model_inputs(trimmed), use_cache=False)  # why the forward is needed at all


def test_clip_features_do_not_depend_on_the_batch(processor, corpus_dir) -> None:  # noqa: ANN001
    examples = _pretrain_examples(corpus_dir, 6)
    collate = ConversationCollator(processor)
    alone = collate(examples[:1])
    together = collate(examples)
    frames = alone["input_features"].shape[-1]
    assert together["input_features"].shape[-1] >= frames
    assert torch.equal(together["input_features"][0, :, :frames], alone["input_features"][0])


def test_every_clip_length_matches_the_full_window() -> None:
    # A 64-frame window, every real length 1..64, padding frames of random values (not zeros): the two
    # frames kept past the longest clip are what conv1 and conv2 read at its end (EDGE_FRAMES).
    config = Qwen2AudioEncoderConfig(
        num_mel_bins=8,
        encoder_layers=1,
        encoder_attention_heads=2,
        encoder_ffn_dim=16,
        d_model=8,
        max_source_positions=32,
    )
    torch.manual_seed(0)
    stock = Qwen2AudioEncoder(config).eval()
    aware = make_length_aware(copy.deepcopy(stock))
    for length in range(1, 65):
        features = torch.randn(1, 8, 64)
        mask = (torch.arange(64) < length).long()[None]
        cut, cut_mask = trim_features(features, mask)
        with torch.no_grad():
            expected = stock(features, attention_mask=encoder_attention_mask(config, mask)).last_hidden_state
            got = aware(cut, attention_mask=encoder_attention_mask(config, cut_mask)).last_hidden_state
        real = audio_token_count(length)
        torch.testing.assert_close(got[:, :real], expected[:, :real], rtol=1e-5, atol=1e-6, msg=f"L={length}")


def test_encoder_refuses_lengths_it_cannot_pool(tiny) -> None:  # noqa: ANN001
    model, _ = tiny
    encoder = model.get_submodule("model.audio_tower")
    mel = model.config.audio_config.num_mel_bins
    with pytest.raises(ValueError, match="multiple of 4"):
        encoder(torch.zeros(1, mel, 42))
    window = model.config.audio_config.max_source_positions * 2
    with pytest.raises(ValueError, match=f"window of {window}"):
        encoder(torch.zeros(1, mel, window + 4))
