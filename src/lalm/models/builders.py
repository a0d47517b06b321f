"""Model builders: plain functions that return (Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor).

The architecture is transformers' own; these functions only choose sizes and load weights.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoProcessor,
    AutoTokenizer,
    Qwen2AudioConfig,
    Qwen2AudioEncoderConfig,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
    Qwen2Config,
    Qwen2ForCausalLM,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperModel,
)

from lalm.config.model import FromComponentsConfig, PretrainedModelConfig, TinyModelConfig
from lalm.data.audio import SAMPLE_RATE
from lalm.data.prompt_texts import PROMPTS
from lalm.models.encoder import enable_length_aware_encoder
from lalm.models.tokenizer import (
    AUDIO,
    ENDOFTEXT,
    IM_END,
    add_audio_special_tokens,
    token_id,
    train_bpe_tokenizer,
)

# UNTIED: transformers' Qwen2AudioForConditionalGeneration declares no tied weights (5.x), so
# tie_weights() does nothing and a checkpoint saved without lm_head would reload with a random one.
# lm_head is therefore always a separate matrix, and text configs say tie_word_embeddings=False.
ModelAndProcessor = tuple[Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor]


def build_feature_extractor(window_seconds: int = 30, num_mel_bins: int = 128) -> WhisperFeatureExtractor:
    """Whisper log-mel front end: 16 kHz, n_fft 400 (25 ms), hop 160 (10 ms), `window_seconds` per clip."""
    return WhisperFeatureExtractor(
        feature_size=num_mel_bins,
        sampling_rate=SAMPLE_RATE,
        hop_length=160,
        n_fft=400,
        chunk_length=window_seconds,
        return_attention_mask=True,
    )


def build_processor(tokenizer, feature_extractor: WhisperFeatureExtractor) -> Qwen2AudioProcessor:  # noqa: ANN001
    """transformers' Qwen2AudioProcessor with its ChatML template (audio as 'Audio i: <|audio_bos|>...')."""
    processor = Qwen2AudioProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)
    tokenizer.chat_template = processor.chat_template
    return processor


def corpus_texts(paths: list[str]) -> Iterator[str]:
    """Every piece of text in manifests (.jsonl, any stage) or plain .txt files, plus the prompt library."""
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if path.endswith(".jsonl"):
                    yield from _strings(json.loads(line))
                elif line.strip():
                    yield line.rstrip("\n")
    for by_language in PROMPTS.values():
        for prompts in by_language.values():
            yield from prompts


def _strings(value: object) -> Iterator[str]:
    # Text fields only: paths and ids would waste vocabulary on file names.
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("text", "chosen", "rejected", "content") and isinstance(item, str):
                yield item
            elif isinstance(item, (dict, list)) and key not in ("audio",):
                yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _finish(model: Qwen2AudioForConditionalGeneration, tokenizer) -> Qwen2AudioForConditionalGeneration:  # noqa: ANN001
    # Chat turns end with <|im_end|>, raw text with <|endoftext|>: generation stops at either.
    model.generation_config.eos_token_id = [token_id(tokenizer, IM_END), token_id(tokenizer, ENDOFTEXT)]
    model.generation_config.pad_token_id = token_id(tokenizer, ENDOFTEXT)
    enable_length_aware_encoder(model)  # the collators cut features to the batch's longest clip
    return model


def build_tiny(cfg: TinyModelConfig) -> ModelAndProcessor:
    """Random-init Qwen2-Audio with a locally trained tokenizer (see TinyModelConfig for the sizes)."""
    if not cfg.tokenizer_corpus:
        raise ValueError(
            "model.tokenizer_corpus is empty: give manifests or .txt files to train the tokenizer on"
        )
    tokenizer = train_bpe_tokenizer(corpus_texts(list(cfg.tokenizer_corpus)), cfg.vocab_size)
    feature_extractor = build_feature_extractor(cfg.window_seconds, cfg.num_mel_bins)
    audio_config = Qwen2AudioEncoderConfig(
        num_mel_bins=cfg.num_mel_bins,
        encoder_layers=cfg.encoder_layers,
        encoder_attention_heads=cfg.encoder_heads,
        encoder_ffn_dim=cfg.encoder_ffn_dim,
        d_model=cfg.encoder_dim,
        # conv2 halves the mel frames: positions = frames per window / 2 (1500 for Whisper's 30 s).
        max_source_positions=feature_extractor.nb_max_frames // 2,
    )
    text_config = Qwen2Config(
        vocab_size=max(len(tokenizer), cfg.embedding_rows),
        hidden_size=cfg.llm_hidden_size,
        intermediate_size=cfg.llm_intermediate_size,
        num_hidden_layers=cfg.llm_layers,
        num_attention_heads=cfg.llm_heads,
        num_key_value_heads=cfg.llm_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=False,  # see UNTIED above
        # ZeRO-3 zero.Init crashes in transformers' init when pad_token_id is set (a known transformers gotcha).
        pad_token_id=None,
    )
    config = Qwen2AudioConfig(
        audio_config=audio_config,
        text_config=text_config,
        audio_token_index=token_id(tokenizer, AUDIO),
    )
    torch.manual_seed(cfg.seed)
    with torch.device(cfg.init_device):
        model = _finish(Qwen2AudioForConditionalGeneration(config), tokenizer)
    return model, build_processor(tokenizer, feature_extractor)


def _whisper_encoder_config(whisper: WhisperConfig) -> Qwen2AudioEncoderConfig:
    return Qwen2AudioEncoderConfig(
        num_mel_bins=whisper.num_mel_bins,
        encoder_layers=whisper.encoder_layers,
        encoder_attention_heads=whisper.encoder_attention_heads,
        encoder_ffn_dim=whisper.encoder_ffn_dim,
        d_model=whisper.d_model,
        max_source_positions=whisper.max_source_positions,
        activation_function=whisper.activation_function,
        scale_embedding=whisper.scale_embedding,
    )


def build_from_components(cfg: FromComponentsConfig) -> ModelAndProcessor:
    """Whisper encoder + Qwen2 LLM from local directories, a fresh projector, the LLM's tokenizer + audio tokens.

    Qwen2AudioEncoder is Whisper's encoder plus a pooling layer without weights, so the encoder's
    state dict loads as is (strictly: a missing or extra tensor is an error, not a silent re-init).
    """
    for name in ("whisper_dir", "llm_dir"):
        if not Path(getattr(cfg, name)).is_dir():
            raise FileNotFoundError(f"model.{name}={getattr(cfg, name)!r} is not a directory")
    whisper = WhisperModel.from_pretrained(cfg.whisper_dir)
    llm = Qwen2ForCausalLM.from_pretrained(cfg.llm_dir)
    tokenizer = AutoTokenizer.from_pretrained(cfg.llm_dir)
    add_audio_special_tokens(tokenizer)
    if len(tokenizer) > llm.config.vocab_size:
        llm.resize_token_embeddings(len(tokenizer))
    text_config = llm.config.to_dict()
    text_config.update(pad_token_id=None, tie_word_embeddings=False)  # see UNTIED
    config = Qwen2AudioConfig(
        audio_config=_whisper_encoder_config(whisper.config),
        text_config=text_config,
        audio_token_index=token_id(tokenizer, AUDIO),
    )
    torch.manual_seed(cfg.seed)
    model = Qwen2AudioForConditionalGeneration(config)
    model.model.audio_tower.load_state_dict(whisper.encoder.state_dict(), strict=True)
    model.model.language_model.load_state_dict(llm.model.state_dict(), strict=True)
    # A tied LLM (e.g. Qwen2.5-0.5B) becomes untied here: lm_head starts as a copy of its embeddings.
    model.lm_head.load_state_dict(llm.lm_head.state_dict(), strict=True)
    _finish(model, tokenizer)
    feature_extractor = _feature_extractor_from(cfg.whisper_dir, whisper.config)
    return model, build_processor(tokenizer, feature_extractor)


def _feature_extractor_from(whisper_dir: str, whisper: WhisperConfig) -> WhisperFeatureExtractor:
    if (Path(whisper_dir) / "preprocessor_config.json").is_file():
        return WhisperFeatureExtractor.from_pretrained(whisper_dir)
    # The encoder's position table fixes the window: 2 mel frames per position, 100 frames per second.
    return build_feature_extractor(whisper.max_source_positions * 2 // 100, whisper.num_mel_bins)


def build_pretrained(cfg: PretrainedModelConfig) -> ModelAndProcessor:
    """A Qwen2-Audio checkpoint directory holding both the model and its processor."""
    path = Path(cfg.path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"model.path={cfg.path!r} holds no config.json: not a model checkpoint")
    if not (path / "preprocessor_config.json").is_file() and not (path / "processor_config.json").is_file():
        raise FileNotFoundError(f"model.path={cfg.path!r} holds no processor (preprocessor_config.json)")
    model = Qwen2AudioForConditionalGeneration.from_pretrained(cfg.path)
    processor = AutoProcessor.from_pretrained(cfg.path)
    enable_length_aware_encoder(model)
    return model, processor


BUILDERS: dict[str, Callable[[Any], ModelAndProcessor]] = {
    "tiny": build_tiny,
    "from_components": build_from_components,
    "pretrained": build_pretrained,
}


def build_model(cfg: TinyModelConfig | FromComponentsConfig | PretrainedModelConfig) -> ModelAndProcessor:
    """Dispatch on `cfg.builder`."""
    if cfg.builder not in BUILDERS:
        raise ValueError(f"unknown model builder {cfg.builder!r}; expected one of {sorted(BUILDERS)}")
    return BUILDERS[cfg.builder](cfg)
