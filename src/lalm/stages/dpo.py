"""DPO: policy vs a frozen reference on chosen/rejected responses to the same prompt.

Sequence log-probabilities are summed over completion tokens (the assistant response and its
<|im_end|>), as in the DPO paper and TRL. The reference is a DeepSpeed engine without optimizer
(ZeRO-3-safe) or, with LoRA, the policy itself with its adapters switched off (no second copy).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch

from lalm.config.train import DpoStageConfig
from lalm.data.collators import CollatorConfig, PreferenceCollator
from lalm.data.sampling import EpochStream
from lalm.losses.preference import chosen_nll, preference_loss, preference_metrics
from lalm.stages.base import Batch, StepOutput, sequence_logps_of


class DpoStage:
    name = "dpo"
    unit = "pairs"

    def __init__(self, cfg: DpoStageConfig, reference: Any | None) -> None:
        self.cfg = cfg
        self.reference = reference  # None: LoRA policy with adapters disabled

    def collator(self, processor: Any, max_length: int) -> PreferenceCollator:
        return PreferenceCollator(processor, CollatorConfig(max_length=max_length))

    def sample_stream(self, dataset: Any, seed: int) -> EpochStream:
        return EpochStream(len(dataset), seed)

    def count_units(self, batch: Batch) -> float:
        return float(batch["example_weights"].sum())

    def _compared(self, logps: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """What the loss compares: summed log-probs, or for IPO the per-token mean (its authors, TRL)."""
        return logps / counts.clamp(min=1) if self.cfg.loss == "ipo" else logps

    def _reference_logps(self, engine: Any, batch: Batch) -> torch.Tensor:
        with torch.no_grad():
            if self.reference is not None:
                return self._compared(*sequence_logps_of(self.reference, batch))
            module = engine.module
            adapters_off = module.disable_adapter() if hasattr(module, "disable_adapter") else nullcontext()
            with adapters_off:
                return self._compared(*sequence_logps_of(engine, batch))

    def forward(self, engine: Any, batch: Batch) -> StepOutput:
        pairs = batch["num_pairs"]
        summed, counts = sequence_logps_of(engine, batch)
        policy = self._compared(summed, counts)
        reference = self._reference_logps(engine, batch)
        logps = (policy[:pairs], policy[pairs:], reference[:pairs], reference[pairs:])
        options = {"label_smoothing": self.cfg.label_smoothing} if self.cfg.loss == "sigmoid" else {}
        losses = preference_loss(self.cfg.loss, *logps, beta=self.cfg.beta, **options)  # type: ignore[arg-type]
        weights = batch["example_weights"].to(losses.device)
        metrics = {
            k: float((v * weights).sum()) for k, v in preference_metrics(*logps, beta=self.cfg.beta).items()
        }
        if self.cfg.rpo_alpha:
            nll = chosen_nll(summed[:pairs], counts[:pairs])
            losses = losses + self.cfg.rpo_alpha * nll
            metrics["nll_loss"] = float((nll.detach() * weights).sum())
        return StepOutput(loss=(losses * weights).sum(), units=float(weights.sum()), metrics=metrics)
