"""Tests for the model builders: tiny, from_components, pretrained, and the build_model dispatch.

Every checkpoint is tiny and written by the test itself in the real on-disk format (save_pretrained:
config.json + safetensors), so nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2Tokenizer,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperModel,
)

from lalm.config.model import FromComponentsConfig, PretrainedModelConfig, TinyModelConfig
from lalm.data.audio import AudioRef, load_audio
from lalm.models import builders
from lalm.models.builders import build_from_components, build_model, build_pretrained, build_tiny
from lalm.models.tokenizer import (
    AUDIO,
    AUDIO_BOS,
    AUDIO_EOS,
    AUDIO_SPECIAL_TOKENS,
    ENDOFTEXT,
    IM_END,
    IM_START,
    _qwen2_pipeline,
)

AUDIO_PROMPT = f"{AUDIO_BOS}{AUDIO}{AUDIO_EOS}hello"
LLM_CORPUS = ["the quick brown fox jumps over the lazy dog, hello world"] * 50


# ---------------------------------------------------------------------------------------------- helpers


def _sine(seconds: float, freq: float = 440.0, rate: int = 16_000) -> np.ndarray:
    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _first_clip(corpus_dir: Path) -> np.ndarray:
    manifest = corpus_dir / "pretrain" / "train.jsonl"
    with open(manifest, encoding="utf-8") as handle:
        record = json.loads(handle.readline())
    return load_audio(AudioRef(str((manifest.parent / record["audio"]["path"]).resolve())))


def _plain_qwen2_tokenizer() -> Qwen2Tokenizer:
    """A Qwen2Tokenizer with <|endoftext|> as its only special token (no ChatML, no audio tokens)."""
    raw = _qwen2_pipeline(Tokenizer(models.BPE()))
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        min_frequency=2,
        special_tokens=[ENDOFTEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(LLM_CORPUS, trainer=trainer)
    model = json.loads(raw.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return Qwen2Tokenizer(vocab=model["vocab"], merges=merges)


def _logits(model: Qwen2AudioForConditionalGeneration, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


# ------------------------------------------------------------------------------------------- build_tiny


def test_tiny_architecture_and_sizes(tiny) -> None:  # noqa: ANN001
    model, processor = tiny
    assert type(model) is Qwen2AudioForConditionalGeneration
    assert isinstance(processor, Qwen2AudioProcessor)
    audio_config = model.config.audio_config
    assert audio_config.num_mel_bins == 128
    assert model.model.audio_tower.conv1.in_channels == 128
    fe = processor.feature_extractor
    assert fe.nb_max_frames == 600
    assert audio_config.max_source_positions == fe.nb_max_frames // 2 == 300
    assert model.model.audio_tower.embed_positions.weight.shape[0] == 300


def test_tiny_vocab_matches_tokenizer(tiny) -> None:  # noqa: ANN001
    model, processor = tiny
    tokenizer = processor.tokenizer
    audio_id = tokenizer.convert_tokens_to_ids(AUDIO)
    assert audio_id != tokenizer.unk_token_id
    assert model.config.audio_token_id == audio_id
    assert tokenizer(AUDIO, add_special_tokens=False)["input_ids"] == [audio_id]
    assert model.config.text_config.vocab_size == len(tokenizer)
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert model.get_output_embeddings().weight.shape[0] == len(tokenizer)


def test_tiny_feature_extractor(tiny) -> None:  # noqa: ANN001
    fe = tiny[1].feature_extractor
    assert isinstance(fe, WhisperFeatureExtractor)
    assert fe.sampling_rate == 16000
    assert fe.hop_length == 160
    assert fe.n_fft == 400
    assert fe.feature_size == 128
    assert fe.n_samples == 6 * 16000


def test_tiny_generation_stops_at_chat_and_text_end(tiny) -> None:  # noqa: ANN001
    model, processor = tiny
    tokenizer = processor.tokenizer
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    eot = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    assert im_end != eot
    eos = model.generation_config.eos_token_id
    assert set(eos) == {im_end, eot}
    assert model.generation_config.pad_token_id == eot


def test_tiny_lm_head_is_untied(tiny) -> None:  # noqa: ANN001
    # Qwen2AudioForConditionalGeneration declares no tied weights, so lalm never ties (builders.UNTIED).
    model, _ = tiny
    assert model.config.text_config.tie_word_embeddings is False
    assert model.get_output_embeddings().weight is not model.get_input_embeddings().weight


def test_tiny_empty_corpus_raises() -> None:
    with pytest.raises(ValueError, match="tokenizer_corpus"):
        build_tiny(TinyModelConfig(tokenizer_corpus=[]))


# ------------------------------------------------------------------------------- build_from_components


@pytest.fixture(scope="module")
def components(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Tiny Whisper (2 s window) and Qwen2 checkpoints saved with save_pretrained, plus the originals."""
    root = tmp_path_factory.mktemp("components")
    torch.manual_seed(0)
    whisper = WhisperModel(
        WhisperConfig(
            d_model=64,
            encoder_layers=2,
            encoder_attention_heads=4,
            encoder_ffn_dim=128,
            decoder_layers=1,
            decoder_attention_heads=4,
            decoder_ffn_dim=128,
            num_mel_bins=128,
            max_source_positions=100,
            vocab_size=100,
            max_target_positions=32,
            # Whisper's defaults (50256/50257) lie outside a 100-token vocabulary.
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
            suppress_tokens=[],
            begin_suppress_tokens=[],
        )
    ).eval()
    whisper_dir = root / "whisper"
    whisper.save_pretrained(whisper_dir)
    whisper_fe_dir = root / "whisper_fe"
    whisper.save_pretrained(whisper_fe_dir)
    WhisperFeatureExtractor(feature_size=128, chunk_length=2).save_pretrained(whisper_fe_dir)

    tokenizer = _plain_qwen2_tokenizer()
    llm = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=len(tokenizer),
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=128,
            max_position_embeddings=256,
            tie_word_embeddings=False,
        )
    ).eval()
    llm_dir = root / "llm"
    llm.save_pretrained(llm_dir)
    tokenizer.save_pretrained(llm_dir)
    return {
        "whisper": whisper,
        "whisper_dir": whisper_dir,
        "whisper_fe_dir": whisper_fe_dir,
        "llm": llm,
        "llm_dir": llm_dir,
        "llm_vocab": len(tokenizer),
    }


@pytest.fixture(scope="module")
def joined(components: dict):  # noqa: ANN201 - (model, processor)
    cfg = FromComponentsConfig(whisper_dir=str(components["whisper_dir"]), llm_dir=str(components["llm_dir"]))
    model, processor = build_from_components(cfg)
    return model.eval(), processor


def test_components_fixture_tokenizer_lacks_chat_and_audio_tokens(components: dict) -> None:
    # Guards the premise of the growth test below: the saved LLM tokenizer knows only <|endoftext|>.
    reloaded = Qwen2Tokenizer.from_pretrained(components["llm_dir"])
    assert len(reloaded) == components["llm_vocab"]
    vocab = reloaded.get_vocab()
    assert ENDOFTEXT in vocab
    for token in (IM_START, IM_END, *AUDIO_SPECIAL_TOKENS):
        assert token not in vocab


def test_from_components_encoder_weights_are_whispers(components: dict, joined) -> None:  # noqa: ANN001
    model, _ = joined
    expected = components["whisper"].encoder.state_dict()
    got = model.model.audio_tower.state_dict()
    assert set(expected) == set(got)
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name
    audio_config = model.config.audio_config
    assert (audio_config.d_model, audio_config.encoder_layers, audio_config.max_source_positions) == (
        64,
        2,
        100,
    )


def test_from_components_llm_weights_are_qwen2s(components: dict, joined) -> None:  # noqa: ANN001
    model, processor = joined
    llm = components["llm"]
    old_vocab = components["llm_vocab"]
    expected = llm.model.state_dict()
    got = model.model.language_model.state_dict()
    assert set(expected) == set(got)
    for name, tensor in expected.items():
        if name == "embed_tokens.weight":
            continue
        assert torch.equal(got[name], tensor), name
    embed = model.get_input_embeddings().weight
    assert torch.equal(embed[:old_vocab], expected["embed_tokens.weight"])
    lm_head = model.get_output_embeddings().weight
    assert torch.equal(lm_head[:old_vocab], llm.lm_head.weight)

    # Growth = the special tokens the LLM tokenizer lacked: ChatML's two plus the three audio tokens.
    grown = len(processor.tokenizer) - old_vocab
    assert grown == 5
    assert embed.shape[0] == lm_head.shape[0] == old_vocab + grown
    assert model.config.text_config.vocab_size == len(processor.tokenizer)
    new_ids = {
        processor.tokenizer.convert_tokens_to_ids(t) for t in (IM_START, IM_END, *AUDIO_SPECIAL_TOKENS)
    }
    assert new_ids == set(range(old_vocab, old_vocab + grown))


def test_from_components_audio_token_and_stop_ids(joined) -> None:  # noqa: ANN001
    model, processor = joined
    tokenizer = processor.tokenizer
    ids = tokenizer(AUDIO, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1
    assert ids[0] == model.config.audio_token_id
    assert set(model.generation_config.eos_token_id) == {
        tokenizer.convert_tokens_to_ids(IM_END),
        tokenizer.convert_tokens_to_ids(ENDOFTEXT),
    }


@pytest.mark.parametrize("whisper_key", ["whisper_dir", "whisper_fe_dir"])
def test_from_components_window_is_two_seconds(components: dict, whisper_key: str) -> None:
    cfg = FromComponentsConfig(whisper_dir=str(components[whisper_key]), llm_dir=str(components["llm_dir"]))
    model, processor = build_from_components(cfg)
    fe = processor.feature_extractor
    assert fe.n_samples == 32000
    assert fe.nb_max_frames == 200
    assert fe.feature_size == 128
    assert fe.sampling_rate == 16000
    # Either front end must feed the encoder: a 1.5 s clip in a 2 s window runs end to end.
    model.eval()
    batch = processor(text=AUDIO_PROMPT, audio=[_sine(1.5, freq=220.0)], return_tensors="pt")
    logits = _logits(model, batch)
    assert logits.shape == (1, batch["input_ids"].shape[1], len(processor.tokenizer))
    assert torch.isfinite(logits).all()


def test_from_components_forward_on_sine_clip(joined) -> None:  # noqa: ANN001
    model, processor = joined
    messages = [
        {
            "role": "user",
            "content": [{"type": "audio", "audio_url": "clip.wav"}, {"type": "text", "text": "hello"}],
        }
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.count(AUDIO) == 1
    batch = processor(text=text, audio=[_sine(1.5)], return_tensors="pt")
    # 150 mel frames -> conv stride 2 -> 75 -> pooling -> 37 audio positions.
    assert int((batch["input_ids"] == model.config.audio_token_id).sum()) == 37
    logits = _logits(model, batch)
    assert logits.shape == (1, batch["input_ids"].shape[1], len(processor.tokenizer))
    assert torch.isfinite(logits).all()


def test_from_components_missing_dir_raises(components: dict, tmp_path: Path) -> None:
    missing = tmp_path / "no_whisper_here"
    cfg = FromComponentsConfig(whisper_dir=str(missing), llm_dir=str(components["llm_dir"]))
    with pytest.raises(FileNotFoundError, match="no_whisper_here"):
        build_from_components(cfg)


# ------------------------------------------------------------------------------------- build_pretrained


@pytest.fixture(scope="module")
def checkpoint(tiny, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: ANN001
    model, processor = tiny
    path = tmp_path_factory.mktemp("ckpt") / "ckpt"
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def test_pretrained_roundtrip_logits(tiny, checkpoint: Path, corpus_dir: Path) -> None:  # noqa: ANN001
    model, processor = tiny
    was_training = model.training
    model.eval()  # the session fixture is shared: its mode is restored below
    loaded, _ = build_pretrained(PretrainedModelConfig(path=str(checkpoint)))
    loaded.eval()
    assert type(loaded) is Qwen2AudioForConditionalGeneration
    wave = _first_clip(corpus_dir)
    assert wave.dtype == np.float32 and len(wave) > 16000
    batch = processor(text=AUDIO_PROMPT, audio=[wave], return_tensors="pt")
    assert int((batch["input_ids"] == model.config.audio_token_id).sum()) > 0
    try:
        expected = _logits(model, batch)
    finally:
        model.train(was_training)
    got = _logits(loaded, batch)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-6)
    assert list(loaded.generation_config.eos_token_id) == list(model.generation_config.eos_token_id)


def test_pretrained_processor_matches(tiny, checkpoint: Path) -> None:  # noqa: ANN001
    _, processor = tiny
    _, loaded_processor = build_pretrained(PretrainedModelConfig(path=str(checkpoint)))
    text = f"{IM_START}user\n{AUDIO_PROMPT} Lucia va al parco mercoledì.{IM_END}\n"
    assert loaded_processor.tokenizer(text)["input_ids"] == processor.tokenizer(text)["input_ids"]
    assert len(loaded_processor.tokenizer) == len(processor.tokenizer)
    fe, loaded_fe = processor.feature_extractor, loaded_processor.feature_extractor
    assert (loaded_fe.n_samples, loaded_fe.feature_size, loaded_fe.hop_length) == (
        fe.n_samples,
        fe.feature_size,
        fe.hop_length,
    )
    messages = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert loaded_processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False
    ) == processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def test_pretrained_without_config_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        build_pretrained(PretrainedModelConfig(path=str(tmp_path)))


def test_pretrained_without_processor_raises(tiny, tmp_path: Path) -> None:  # noqa: ANN001
    tiny[0].save_pretrained(tmp_path / "model_only")
    assert (tmp_path / "model_only" / "config.json").is_file()
    with pytest.raises(FileNotFoundError, match="processor"):
        build_pretrained(PretrainedModelConfig(path=str(tmp_path / "model_only")))


# ------------------------------------------------------------------------------------------ build_model


@pytest.mark.parametrize(
    "cfg",
    [TinyModelConfig(), FromComponentsConfig(), PretrainedModelConfig()],
    ids=["tiny", "from_components", "pretrained"],
)
def test_build_model_dispatches_by_name(cfg, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    calls = []
    for name in builders.BUILDERS:
        monkeypatch.setitem(builders.BUILDERS, name, lambda c, name=name: calls.append((name, c)) or name)
    assert build_model(cfg) == cfg.builder
    assert calls == [(cfg.builder, cfg)]


def test_build_model_real_pretrained(checkpoint: Path) -> None:
    model, processor = build_model(PretrainedModelConfig(path=str(checkpoint)))
    assert type(model) is Qwen2AudioForConditionalGeneration
    assert processor.tokenizer.convert_tokens_to_ids(AUDIO) == model.config.audio_token_id


def test_build_model_unknown_builder_raises() -> None:
    with pytest.raises(ValueError, match="'huge'"):
        build_model(TinyModelConfig(builder="huge"))


def test_from_components_unties_a_tied_llm_and_stock_transformers_reloads_it(
    components: dict, tmp_path: Path
) -> None:
    tokenizer = _plain_qwen2_tokenizer()
    tied = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=len(tokenizer),
            hidden_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=128,
            tie_word_embeddings=True,
        )
    ).eval()
    assert tied.lm_head.weight is tied.get_input_embeddings().weight
    tied.save_pretrained(tmp_path / "llm")
    tokenizer.save_pretrained(tmp_path / "llm")
    model, processor = build_from_components(
        FromComponentsConfig(whisper_dir=str(components["whisper_dir"]), llm_dir=str(tmp_path / "llm"))
    )
    rows = tied.get_input_embeddings().weight.shape[0]
    assert model.config.text_config.tie_word_embeddings is False
    assert torch.equal(model.lm_head.weight[:rows], tied.get_input_embeddings().weight)
    model.save_pretrained(tmp_path / "joined")
    reloaded = Qwen2AudioForConditionalGeneration.from_pretrained(tmp_path / "joined")
    assert torch.equal(reloaded.lm_head.weight, model.lm_head.weight)
