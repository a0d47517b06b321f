"""Model FLOPs of a step, by PERF.md's formula, for the records' `model_tflops_per_s` and `mfu`.

Per real LLM position: 6·N_llm when the LLM takes gradients (trained, or LoRA: the gradient flows
through every layer), 2·N_llm more for DPO's frozen reference (counted per step whether it runs live
or was cached). Per encoder position (50 per second of audio, after the stride-2 convolution; one
mel frame is 10 ms): 6·N_enc when the encoder trains, else 2·N_enc. N_llm counts every LLM parameter,
embedding table and untied head included, the convention of issue 10's baseline numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# H100 / H200 SXM dense bf16 peak, the MFU denominator on a GPU (NVIDIA's data sheets: 989.4 TFLOP/s).
GPU_PEAK_FLOPS = 989e12


@dataclass(frozen=True)
class StepFlops:
    per_llm_position: float
    per_encoder_position: float

    def of(self, llm_positions: float, mel_frames: float) -> float:
        """FLOPs of `llm_positions` real LLM positions and clips of `mel_frames` real mel frames."""
        return self.per_llm_position * llm_positions + self.per_encoder_position * mel_frames / 2


def step_flops(model: Any, dpo: bool) -> StepFlops:
    """The FLOP rates of a training module (lalm.models.training.AudioLanguageModel)."""
    base = model.base
    llm = [*base.model.language_model.parameters(), *base.get_output_embeddings().parameters()]
    encoder = list(base.model.audio_tower.parameters())
    n_llm, n_enc = _count(llm), _count(encoder)
    encoder_ids = {id(p) for p in encoder}
    llm_grad = any(p.requires_grad for p in model.parameters() if id(p) not in encoder_ids)
    encoder_trained = any(p.requires_grad for p in encoder)
    per_llm = (6.0 if llm_grad else 2.0) * n_llm + (2.0 * n_llm if dpo else 0.0)
    return StepFlops(per_llm, (6.0 if encoder_trained else 2.0) * n_enc)


def _count(params: list[Any]) -> int:
    """Elements, whole even where ZeRO-3 has partitioned them (ds_numel)."""
    return sum(int(getattr(p, "ds_numel", p.numel())) for p in params)
