"""Which parameters a stage trains: encoder, projector and LLM independently, LoRA (peft) optionally."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model

from lalm.config.train import StageConfig
from lalm.stages.ctc import HEAD_NAME

# Parameter-name fragments of each part of Qwen2AudioForConditionalGeneration (also under peft's
# "base_model.model." prefix, hence substring matching).
PARTS = {
    "encoder": ("model.audio_tower.", f"{HEAD_NAME}."),  # the auxiliary CTC head trains with the encoder
    "projector": ("model.multi_modal_projector.",),
    "llm": ("model.language_model.", "lm_head."),
}
# Whisper's sinusoidal position table is frozen by transformers; it stays frozen in every stage.
ALWAYS_FROZEN = ("embed_positions",)


def part_of(name: str) -> str:
    for part, fragments in PARTS.items():
        if any(fragment in name for fragment in fragments):
            return part
    raise ValueError(f"parameter {name} belongs to no known part of the model")


def _set_trainable(model: torch.nn.Module, flags: dict[str, bool], lora: bool) -> None:
    for name, param in model.named_parameters():
        if any(frozen in name for frozen in ALWAYS_FROZEN):
            param.requires_grad_(False)
        elif lora and "lora_" in name:
            param.requires_grad_(True)
        elif lora and part_of(name) == "llm":
            param.requires_grad_(False)  # LoRA trains adapters, never the base LLM weights
        else:
            param.requires_grad_(flags[part_of(name)])


def prepare_trainable(model: torch.nn.Module, stage: StageConfig) -> torch.nn.Module:
    """Set requires_grad per part; with LoRA, wrap the model in peft adapters on the LLM's linear layers."""
    flags = {"encoder": stage.train_encoder, "projector": stage.train_projector, "llm": stage.train_llm}
    if stage.lora.enabled:
        modules = "|".join(stage.lora.target_modules)
        config = PeftLoraConfig(
            r=stage.lora.r,
            lora_alpha=stage.lora.alpha,
            lora_dropout=stage.lora.dropout,
            # Adapters on the LLM only: the encoder's own q/k/v projections share these names.
            target_modules=rf".*language_model.*\.({modules})",
        )
        model = get_peft_model(model, config)
    _set_trainable(model, flags, stage.lora.enabled)
    return model


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def parameter_groups(params: Iterable[tuple[str, torch.nn.Parameter]], weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on biases and norm weights (1-D tensors), the usual practice."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for _, param in params:
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
