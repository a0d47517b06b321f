"""DeepSpeed checkpoints during training, and the final Hugging Face export.

<stage>/final/ is what `Qwen2AudioForConditionalGeneration.from_pretrained` and
`AutoProcessor.from_pretrained` load: safetensors weights (ZeRO-3 shards consolidated, LoRA merged),
config, processor. It is written to a temporary folder and renamed into place, so a crash never
leaves a half-written final/.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from lalm.stages.ctc import HEAD_NAME
from lalm.training.distributed import barrier, is_main


def _full_state_dict(engine: Any) -> dict[str, torch.Tensor] | None:
    """Full weights on rank 0 (None elsewhere), training-only heads left out. Collective under ZeRO-3:
    every rank must call it."""
    if engine.zero_optimization_stage() == 3:
        state = engine._zero3_consolidated_16bit_state_dict()
    else:
        state = engine.module.state_dict() if is_main() else None
    return None if state is None else {k: v for k, v in state.items() if HEAD_NAME not in k}


def _merged_lora_state(peft_model: Any) -> dict[str, torch.Tensor]:
    """Base-model weights with the adapters folded in (W + peft's delta B·A·scale), computed aside so
    the trained model is left untouched (merge/unmerge in place would drift the base weights)."""
    base = peft_model.get_base_model()
    state = {
        k.replace(".base_layer", ""): v.detach() for k, v in base.state_dict().items() if "lora_" not in k
    }
    for name, module in base.named_modules():
        if hasattr(module, "get_delta_weight") and hasattr(module, "base_layer"):
            for adapter in module.active_adapters:
                state[f"{name}.weight"] = state[f"{name}.weight"] + module.get_delta_weight(adapter)
    return state


def export_final(engine: Any, processor: Any, final_dir: Path) -> None:
    """Write the trained model and its processor as a Hugging Face directory (all ranks call this)."""
    state = _full_state_dict(engine)
    if is_main():
        module = engine.module
        if hasattr(module, "get_base_model"):  # LoRA (ZeRO-0/1/2 only, see config validation)
            state = {k: v for k, v in _merged_lora_state(module).items() if HEAD_NAME not in k}
            module = module.get_base_model()
        tmp = final_dir.with_name(final_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        module.save_pretrained(tmp, state_dict=state, safe_serialization=True)
        processor.save_pretrained(tmp)
        shutil.rmtree(final_dir, ignore_errors=True)
        tmp.rename(final_dir)
    barrier()


def save_checkpoint(engine: Any, checkpoint_dir: Path, step: int, client_state: dict[str, Any]) -> None:
    """Full DeepSpeed state (weights, optimizer, schedule) plus the trainer's own state."""
    engine.save_checkpoint(str(checkpoint_dir), tag=f"step-{step:07d}", client_state=client_state)
