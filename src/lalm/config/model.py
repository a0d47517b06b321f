"""Typed configs of the `model=` group. One dataclass per builder; every hyperparameter is spelled out."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TinyModelConfig:
    """A randomly initialised small Qwen2-Audio for CPU tests and demos.

    The defaults (192-wide, 3+3 layers, ~3.3M parameters with a 2,000-token vocabulary) are the sizes measured
    to learn English ASR on synthetic speech within minutes on 2 CPU cores (docs/design-notes.md).
    lm_head is not tied to the input embeddings: transformers' Qwen2AudioForConditionalGeneration
    declares no tied weights, so a tied checkpoint would reload with a random lm_head.
    """

    builder: str = "tiny"
    encoder_layers: int = 3
    encoder_dim: int = 192
    encoder_heads: int = 4
    encoder_ffn_dim: int = 768
    llm_layers: int = 3
    llm_hidden_size: int = 192
    llm_heads: int = 4
    llm_kv_heads: int = 2
    llm_intermediate_size: int = 512
    max_position_embeddings: int = 2048
    # Whisper-style front end: 128 mel bins, 16 kHz, 25 ms window (400), 10 ms hop (160). The encoder
    # sees a fixed window of this many seconds (Whisper uses 30; short clips train faster on a short one).
    window_seconds: int = 6
    num_mel_bins: int = 128
    vocab_size: int = 4000
    # Manifests (any stage) or .txt files whose text trains the byte-level BPE.
    tokenizer_corpus: list[str] = field(default_factory=list)
    seed: int = 0
    # > 0: embedding and output rows (the tokenizer uses its own vocab_size of them), so a benchmark
    # shape pays for a real vocabulary's LM head (Qwen2: 151,936 rows; Qwen2-Audio-7B: 156,032).
    embedding_rows: int = 0
    # Where the random weights are made: "cpu", or "cuda" for benchmark shapes (a 7B model initialised
    # on the host takes minutes and 34 GB; on the GPU, seconds).
    init_device: str = "cpu"


@dataclass
class FromComponentsConfig:
    """Whisper encoder weights + a Qwen2/Qwen2.5 LLM from local directories, joined by a new projector."""

    builder: str = "from_components"
    whisper_dir: str = "???"
    llm_dir: str = "???"
    seed: int = 0


@dataclass
class PretrainedModelConfig:
    """A local Qwen2-Audio checkpoint directory (model + processor), e.g. a previous stage's final/."""

    builder: str = "pretrained"
    path: str = "???"
