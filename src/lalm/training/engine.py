"""DeepSpeed engines: the trained model (with optimizer and schedule) and a frozen reference.

Learning rate, batch sizes, clipping and schedule come from lalm's config and are written into the
DeepSpeed config here: the `deepspeed` config group holds engine settings only.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import deepspeed
import torch

from lalm.config.train import DeepSpeedConfig, OptimConfig, TrainerConfig
from lalm.training.distributed import has_gpu
from lalm.training.params import parameter_groups
from lalm.training.schedule import lr_multiplier


def use_bf16(precision: str) -> bool:
    """bf16 on GPUs, fp32 on CPU (CPU bf16 matmuls are slow and gloo reductions gain nothing)."""
    return precision == "bf16" or (precision == "auto" and has_gpu())


def deepspeed_config(
    ds: DeepSpeedConfig, trainer: TrainerConfig, optim: OptimConfig, accumulation: int
) -> dict[str, Any]:
    zero: dict[str, Any] = {
        "stage": ds.zero_stage,
        "overlap_comm": ds.overlap_comm,
        "contiguous_gradients": ds.contiguous_gradients,
        "reduce_bucket_size": ds.reduce_bucket_size,
    }
    if ds.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # final/ holds consolidated weights
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": trainer.micro_batch_size,
        "gradient_accumulation_steps": accumulation,
        "gradient_clipping": optim.max_grad_norm,
        "zero_optimization": zero,
        # DeepSpeed checks bf16 gradients for inf/NaN only when asked; the trainer's guard relies on it.
        "bf16": {"enabled": use_bf16(trainer.precision), "check_grad_overflow": True},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
    }
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": has_gpu()}
        # An offloaded optimizer must be DeepSpeed's CPU Adam, built by DeepSpeed from these values.
        config["optimizer"] = {
            "type": "AdamW",
            "params": {
                "lr": optim.lr,
                "betas": list(optim.betas),
                "eps": optim.eps,
                "weight_decay": optim.weight_decay,
            },
        }
    return config


def _scheduler(
    optimizer: torch.optim.Optimizer, optim: OptimConfig, max_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    multiplier = lr_multiplier(optim.schedule, optim.warmup_steps, max_steps, optim.min_lr_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)


def initialize_engine(
    model: torch.nn.Module,
    ds: DeepSpeedConfig,
    trainer: TrainerConfig,
    optim: OptimConfig,
    accumulation: int,
    extra_config: dict[str, Any] | None = None,
) -> deepspeed.DeepSpeedEngine:
    """The trained engine: AdamW over the trainable parameters, warmup + cosine/constant schedule.
    extra_config is merged into DeepSpeed's config (e.g. the switch to load a universal checkpoint)."""
    config = {**deepspeed_config(ds, trainer, optim, accumulation), **(extra_config or {})}
    groups = parameter_groups(model.named_parameters(), optim.weight_decay, optim.lr, optim.lr_scale)
    optimizer = None
    if not ds.offload_optimizer:  # offloaded: DeepSpeed builds its CPU Adam from `config` over `groups`
        optimizer = torch.optim.AdamW(
            groups, lr=optim.lr, betas=(optim.betas[0], optim.betas[1]), eps=optim.eps
        )
    engine, *_ = deepspeed.initialize(
        model=model,
        model_parameters=groups,
        optimizer=optimizer,
        lr_scheduler=partial(_scheduler, optim=optim, max_steps=trainer.max_steps),
        config=config,
    )
    return engine


def initialize_reference(model: torch.nn.Module, ds: DeepSpeedConfig, trainer: TrainerConfig) -> Any:
    """A frozen model wrapped by DeepSpeed without an optimizer, sharded like the policy under ZeRO-3
    (so every rank runs it in lockstep, which is what ZeRO-3's all-gathers need), in eval mode."""
    model.requires_grad_(False)
    config = {
        "train_micro_batch_size_per_gpu": trainer.micro_batch_size,
        "zero_optimization": {"stage": 3 if ds.zero_stage == 3 else 0},
        "bf16": {"enabled": use_bf16(trainer.precision)},
        "steps_per_print": 10**9,
    }
    engine, *_ = deepspeed.initialize(model=model, config=config)
    engine.eval()
    return engine


class StepGate:
    """Lets the trainer veto one optimizer update after DeepSpeed has reduced the gradients.

    DeepSpeed decides by itself to skip a step with a non-finite gradient norm under ZeRO 1-3 (and
    then also skips the LR schedule), but not under ZeRO-0, and never for a loss that is non-finite on
    one rank only while the reduced gradients look fine. So the trainer agrees on its own verdict
    across ranks and, for a skip, the base optimizer's `step` returns without touching weights or
    moments; the gradients are cleared by DeepSpeed as after any step. `finish_step` then advances the
    schedule exactly once per optimizer step, applied or not, so step k always uses lr(k).
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.skip = False
        inner = getattr(engine.optimizer, "optimizer", engine.optimizer)  # ZeRO wraps the torch optimizer
        original = inner.step

        def gated_step(*args: Any, **kwargs: Any) -> Any:
            return None if self.skip else original(*args, **kwargs)

        gated_step._wrapped_by_lr_sched = True  # type: ignore[attr-defined]  # torch's "step overridden" check
        inner.step = gated_step

    def step(self, skip: bool) -> bool:
        """The boundary engine.step(); returns whether the update was applied."""
        scheduler = self.engine.lr_scheduler
        before = scheduler.last_epoch if scheduler is not None else None
        self.skip = skip
        try:
            self.engine.step()
        finally:
            self.skip = False
        if scheduler is not None and scheduler.last_epoch == before:  # DeepSpeed skipped it (overflow)
            scheduler.step()
        return not skip and bool(self.engine.was_step_applied())
