"""lalm's side of scripts/bench_dpo.py: the shared text-only Qwen2 both sides start from, and lalm's
DPO step around it (Qwen2-Audio in AudioLanguageModel, DpoStage, AdamW), optionally with audio."""

from __future__ import annotations

import copy
import hashlib
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

try:  # imported as scripts.bench_dpo_lalm (the tests)
    from .bench_dpo_batches import MEL_BINS, WINDOW_FRAMES, audio_token_id
    from .bench_dpo_trl import BETA
except ImportError:  # run from scripts/bench_dpo.py: its folder is sys.path[0]
    from bench_dpo_batches import MEL_BINS, WINDOW_FRAMES, audio_token_id  # type: ignore[no-redef]
    from bench_dpo_trl import BETA  # type: ignore[no-redef]

MAX_GRAD_NORM = 1.0  # TrainingArguments' default, applied on both sides


@dataclass
class Shape:
    hidden: int = 256
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 1024
    # A real vocabulary at a small width: the LM head then costs as much as the layers, as it does in
    # small LLMs (Qwen2-0.5B: 896 wide, 151k tokens), so the head's handling shows in the timing.
    vocab: int = 32000


SHAPES = {"tiny": Shape(), "qwen2-1.5b": Shape(1536, 28, 12, 2, 8960, 151936)}  # Qwen2-1.5B's config
ENCODERS = {
    "tiny": {"encoder_layers": 1, "d_model": 64, "encoder_attention_heads": 2, "encoder_ffn_dim": 128},
    "whisper-large": {
        "encoder_layers": 32,
        "d_model": 1280,
        "encoder_attention_heads": 20,
        "encoder_ffn_dim": 5120,
    },
}


def build_llm(shape: Shape, seed: int) -> Qwen2ForCausalLM:
    """The text-only LLM both sides start from: the same weights for the same seed, in any process."""
    config = Qwen2Config(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=4096,
        tie_word_embeddings=False,  # lalm's models are untied (lalm.config.model.TinyModelConfig)
        eos_token_id=shape.vocab - 1,
    )
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config).float()


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-1 of the state dict: the two worker processes prove they start from the same weights."""
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


class LalmDpo:
    """lalm's side: Qwen2-Audio around `llm` (wrapped in AudioLanguageModel), DpoStage against a frozen
    copy, AdamW over the trainable parameters (LLM and projector; the encoder is frozen)."""

    def __init__(
        self,
        llm: Qwen2ForCausalLM,
        encoder: str,
        device: torch.device,
        bf16: bool,
        lr: float,
        checkpointing: str = "none",
    ):
        from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration

        from lalm.config.train import DpoStageConfig
        from lalm.models.encoder import enable_length_aware_encoder
        from lalm.models.training import AudioLanguageModel, enable_activation_checkpointing
        from lalm.stages.dpo import DpoStage

        audio_config = {
            **ENCODERS[encoder],
            "num_mel_bins": MEL_BINS,
            "max_source_positions": WINDOW_FRAMES // 2,
        }
        config = Qwen2AudioConfig(
            text_config=llm.config.to_dict(),
            audio_config=audio_config,
            audio_token_index=audio_token_id(llm.config.vocab_size),
        )
        with device:  # a Whisper-large encoder initialises in seconds on a GPU; its weights are random
            hf = Qwen2AudioForConditionalGeneration(config).float()
        hf.model.language_model.load_state_dict(llm.model.state_dict())
        hf.lm_head.load_state_dict(llm.lm_head.state_dict())
        enable_length_aware_encoder(hf)  # without it the encoder insists on the 30-s window
        hf.model.audio_tower.requires_grad_(False)  # DPO's default (configs/stage/dpo.yaml train_encoder)
        self.encoder_params = sum(p.numel() for p in hf.model.audio_tower.parameters())
        reference = copy.deepcopy(hf).eval().requires_grad_(False)
        enable_activation_checkpointing(hf, checkpointing)  # trainer.activation_checkpointing's switch
        self.model = AudioLanguageModel(hf).train()
        self.stage = DpoStage(DpoStageConfig(beta=BETA), reference)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        fused = device.type == "cuda"
        self.optimizer = torch.optim.AdamW(self.trainable, lr=lr, weight_decay=0.0, fused=fused)
        self.device, self.bf16 = device, bf16

    def _precision(self) -> AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def cache_reference(self, batches: list[dict[str, Any]]) -> None:
        """Give each batch its reference log-probs, (2N,) float32 in row order, as
        lalm.training.reference_cache does; then release the reference model."""
        for batch in batches:
            with self._precision():
                batch["reference_logps"] = self.stage.reference_sequence_logps(None, batch)[0].float()
        self.stage.release_reference()

    def step(self, batch: dict[str, Any]) -> Any:
        """One optimizer step -> StepOutput. The loss is divided by the step's pairs as lalm's Trainer
        does (StepOutput.loss is a sum), so both sides take the same update."""
        with self._precision():
            out = self.stage.forward(self.model, batch)
            loss = out.loss / out.units
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.trainable, MAX_GRAD_NORM)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return out
