"""Which parameters a stage trains: encoder, projector and LLM independently, LoRA (peft) optionally."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model

from lalm.config.train import LrScaleConfig, StageConfig
from lalm.models.training import AudioLanguageModel

# Parameter-name fragments of each part of Qwen2AudioForConditionalGeneration (also under peft's
# "base_model.model." prefix, hence substring matching).
PARTS = {
    "encoder": ("model.audio_tower.", "ctc_head."),  # the auxiliary CTC head trains with the encoder
    "projector": ("model.multi_modal_projector.",),
    "llm": ("model.language_model.", "lm_head."),
}
# The order of the optimizer's param groups by part (see parameter_groups).
GROUP_ORDER = ("llm", "projector", "encoder")
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
        # On the transformers model inside the training wrapper: peft's adapters, save and merge work
        # on the model transformers knows; the CTC head stays outside.
        hf = model.hf if isinstance(model, AudioLanguageModel) else model
        adapted = get_peft_model(hf, config)
        if isinstance(model, AudioLanguageModel):
            model.hf = adapted
        else:
            model = adapted
    _set_trainable(model, flags, stage.lora.enabled)
    return model


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def parameter_groups(
    params: Iterable[tuple[str, torch.nn.Parameter]], weight_decay: float, lr: float, lr_scale: LrScaleConfig
) -> list[dict]:
    """AdamW groups of the trainable parameters: one per learning rate, split into weight decay and no
    weight decay (biases and norm weights, the 1-D tensors: the usual practice); empty ones left out.

    A part's rate is lr x its lr_scale. Parts with the same rate share their groups, so the default
    scales give the two groups [decay, no decay] that checkpoints saved before lr_scale existed hold
    (a checkpoint only loads into the same groups). Groups come in the order of GROUP_ORDER's first
    part of each rate, decay first: group 0 is the LLM's whenever the LLM (or LoRA) trains, so the
    rate the trainer logs (group 0's) is the LLM's. Within a group parameters keep the model's order.
    """
    scales = {part: getattr(lr_scale, part) for part in GROUP_ORDER}
    by_scale: dict[float, tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]] = {}
    for part in GROUP_ORDER:
        by_scale.setdefault(scales[part], ([], []))
    for name, param in params:
        if param.requires_grad:
            decay, no_decay = by_scale[scales[part_of(name)]]
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = []
    for scale, (decay, no_decay) in by_scale.items():
        groups.append({"params": decay, "weight_decay": weight_decay, "lr": lr * scale})
        groups.append({"params": no_decay, "weight_decay": 0.0, "lr": lr * scale})
    return [group for group in groups if group["params"]]
