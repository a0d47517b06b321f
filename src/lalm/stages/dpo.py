"""DPO: policy vs a frozen reference on chosen/rejected responses to the same prompt.

Sequence log-probabilities are summed over completion tokens (the assistant response and its
<|im_end|>), as in the DPO paper and TRL. The reference is a DeepSpeed engine without optimizer
(ZeRO-3-safe) or, with LoRA, the policy itself with its adapters switched off (no second copy).
Each clip is carried once per pair by the collator and encoded once per step (see _shared_encoding).
"""

from __future__ import annotations

import gc
from contextlib import nullcontext
from typing import Any

import torch

from lalm.config.train import DpoStageConfig
from lalm.data.sampling import EpochStream
from lalm.losses.preference import chosen_nll, preference_loss, preference_metrics
from lalm.models.training import Encoded, encode_batch, sequence_logps_of, training_module
from lalm.stages.base import Batch, StepOutput


class DpoStage:
    name = "dpo"
    unit = "pairs"

    def __init__(self, cfg: DpoStageConfig, reference: Any | None) -> None:
        self.cfg = cfg
        self.reference = reference  # None: LoRA policy with adapters disabled
        self.cached = False  # True once the batches carry cached reference log-probs

    def release_reference(self) -> None:
        """From now on every batch carries its reference log-probs (lalm.training.reference_cache):
        drop the reference model so its memory can be freed."""
        self.reference, self.cached = None, True
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def sample_stream(self, dataset: Any, seed: int) -> EpochStream:
        return EpochStream(len(dataset), seed)

    def count_units(self, batch: Batch) -> float:
        return float(batch["example_weights"].sum())

    def _compared(self, logps: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """What the loss compares: summed log-probs, or for IPO the per-token mean (its authors, TRL)."""
        return logps / counts.clamp(min=1) if self.cfg.loss == "ipo" else logps

    def _shared_encoding(self, engine: Any, batch: Batch) -> Encoded | None:
        """With the policy's encoder frozen (the DPO default), one no-grad pass over the batch's clips
        serves the chosen and rejected rows of the policy and of the reference: the reference is the
        init_from model, whose encoder the frozen policy encoder still is. None: each model encodes
        its own (still each clip once, not once per row)."""
        if "input_features" not in batch or training_module(engine).encoder_trainable():
            return None
        with torch.no_grad():
            return encode_batch(engine, batch)

    def _reference_logps(
        self, engine: Any, batch: Batch, encoded: Encoded | None, counts: torch.Tensor
    ) -> torch.Tensor:
        if "reference_logps" in batch:  # cached (lalm.training.reference_cache): no reference forward
            return self._compared(batch["reference_logps"].to(counts.device), counts)
        if self.cached:
            raise ValueError(f"examples {batch['ids']} carry no cached reference log-probs")
        return self._compared(*self.reference_sequence_logps(engine, batch, encoded))

    def reference_sequence_logps(
        self, engine: Any, batch: Batch, encoded: Encoded | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed log-probs and counts per row under the reference ((2P,), (2P,)), without gradient."""
        with torch.no_grad():
            if self.reference is not None:
                return sequence_logps_of(self.reference, batch, encoded)
            module = training_module(engine).hf
            adapters_off = module.disable_adapter() if hasattr(module, "disable_adapter") else nullcontext()
            with adapters_off:
                return sequence_logps_of(engine, batch, encoded)

    def forward(self, engine: Any, batch: Batch) -> StepOutput:
        pairs = batch["num_pairs"]
        cached = "reference_logps" in batch
        encoded = None if cached else self._shared_encoding(engine, batch)
        summed, counts = sequence_logps_of(engine, batch, encoded)
        policy = self._compared(summed, counts)
        reference = self._reference_logps(engine, batch, encoded, counts)
        logps = (policy[:pairs], policy[pairs:], reference[:pairs], reference[pairs:])
        options = (
            {"label_smoothing": self.cfg.label_smoothing} if self.cfg.loss in ("sigmoid", "robust") else {}
        )
        losses = preference_loss(self.cfg.loss, *logps, beta=self.cfg.beta, **options)  # type: ignore[arg-type]
        weights = batch["example_weights"].to(losses.device)
        metrics = {k: (v * weights).sum() for k, v in preference_metrics(*logps, beta=self.cfg.beta).items()}
        if self.cfg.rpo_alpha:
            nll = chosen_nll(summed[:pairs], counts[:pairs])
            losses = losses + self.cfg.rpo_alpha * nll
            metrics["nll_loss"] = (nll.detach() * weights).sum()
        return StepOutput(loss=(losses * weights).sum(), units=weights.sum(), metrics=metrics)
