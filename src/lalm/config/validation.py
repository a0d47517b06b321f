"""validate(): every mistake of a TrainConfig at once, before anything is allocated.

Each stage's own checks are the registry's (StageSpec.config_errors, lalm.config.stage_checks); the
model group's are lalm.config.model_checks, data.mixture's lalm.config.mixture_checks. What only the
manifests reveal (lengths, task weights against the data) is lalm.config.data_checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lalm.config.augment import AugmentConfig, augment_errors
from lalm.config.checks import unknown_fields
from lalm.config.mixture_checks import check, mixture_errors
from lalm.config.mixture_checks import finite as _finite
from lalm.config.model_checks import model_errors
from lalm.config.train import (
    ACTIVATION_CHECKPOINTING,
    DataConfig,
    DeepSpeedConfig,
    LoraConfig,
    LrScaleConfig,
    OptimConfig,
    StageConfig,
    TrainConfig,
    accumulation_steps,
    manifest_path,
)
from lalm.errors import ConfigError
from lalm.stages.registry import get_stage, load, stage_names


def _check_checkpoint(path: str, errors: list[str]) -> None:
    if not (Path(path) / "config.json").is_file():
        errors.append(
            f"init_from={path!r} is not a model checkpoint (no config.json): run the previous stage first"
        )


Bound = tuple[str, Any, bool, str]  # (setting, value, whether it is acceptable, what it must be)


def _out_of_bounds(bounds: list[Bound]) -> list[str]:
    return [f"{name} must be {want}, got {value}" for name, value, ok, want in bounds if not ok]


def _trainable_errors(cfg: TrainConfig) -> list[str]:
    """Something trains, and an enabled LoRA's values are in range."""
    stage = cfg.stage
    errors: list[str] = []
    check(
        stage.train_encoder or stage.train_projector or stage.train_llm or stage.lora.enabled,
        "nothing to train: enable stage.train_encoder, train_projector, train_llm or lora",
        errors,
    )
    return errors + _lora_errors(stage.lora)


def _stage_errors(cfg: TrainConfig) -> list[str]:
    """The stage's own checks, as the registry names them (lalm.config.stage_checks for the three
    stages), then what every stage shares: something to train, and LoRA's settings."""
    own = get_stage(cfg.stage.name).config_errors
    specific: list[str] = load(own)(cfg) if own is not None else []
    return specific + _trainable_errors(cfg)


def _lora_errors(lora: LoraConfig) -> list[str]:
    if not lora.enabled:  # the values of disabled adapters are never read
        return []
    return _out_of_bounds(
        [
            ("stage.lora.r", lora.r, lora.r >= 1, ">= 1"),
            ("stage.lora.alpha", lora.alpha, lora.alpha > 0, "> 0"),
            ("stage.lora.dropout", lora.dropout, 0 <= lora.dropout < 1, "in [0, 1)"),
            ("stage.lora.target_modules", list(lora.target_modules), bool(lora.target_modules), "non-empty"),
        ]
    )


def _data_errors(data: DataConfig) -> list[str]:
    return _out_of_bounds(
        [
            ("data.length_groups", data.length_groups, data.length_groups >= 0, ">= 0"),
            ("data.max_length", data.max_length, data.max_length > 0, "> 0"),
            ("data.num_workers", data.num_workers, data.num_workers >= -1, ">= 0, or -1 for automatic"),
            (
                "data.max_bad_fraction",
                data.max_bad_fraction,
                0 <= data.max_bad_fraction <= 1,
                "in [0, 1] (a share of the manifest)",
            ),
            (
                "data.duration_tolerance_s",
                data.duration_tolerance_s,
                _finite(data.duration_tolerance_s) and data.duration_tolerance_s >= 0,
                "a number of seconds >= 0",
            ),
            (
                "data.long_audio_overlap_s",
                data.long_audio_overlap_s,
                _finite(data.long_audio_overlap_s) and data.long_audio_overlap_s >= 0,
                "a number of seconds >= 0 (and shorter than the encoder's window)",
            ),
            (
                "data.max_audio_seconds",
                data.max_audio_seconds,
                _finite(data.max_audio_seconds) and data.max_audio_seconds > 0,
                "a number of seconds > 0",
            ),
        ]
    )


def _lr_scale_errors(lr_scale: LrScaleConfig, stage: StageConfig) -> list[str]:
    """Scales must be finite and >= 0, and 0 only for a part the stage does not train: AdamW at lr 0
    leaves a trainable part unchanged, yet it still costs gradients and optimizer state."""
    trained = {
        "encoder": stage.train_encoder,
        "projector": stage.train_projector,
        "llm": stage.train_llm or stage.lora.enabled,  # LoRA's adapters belong to the LLM
    }
    errors: list[str] = []
    for part, is_trained in trained.items():
        scale = getattr(lr_scale, part)
        if not (_finite(scale) and scale >= 0):
            errors.append(f"optim.lr_scale.{part} must be a finite number >= 0, got {scale}")
        elif scale == 0 and is_trained:
            freeze = (
                "stage.train_llm=false stage.lora.enabled=false"
                if part == "llm"
                else f"stage.train_{part}=false"
            )
            errors.append(
                f"optim.lr_scale.{part}=0 trains the {part} at learning rate 0: to freeze it set {freeze}, "
                "or give it a scale > 0"
            )
    return errors


def _optim_errors(optim: OptimConfig, stage: StageConfig, max_steps: int) -> list[str]:
    betas = list(optim.betas)
    errors = _out_of_bounds(
        [
            ("optim.lr", optim.lr, _finite(optim.lr) and optim.lr > 0, "a finite number > 0"),
            (
                "optim.betas",
                betas,
                len(betas) == 2 and all(0 <= b < 1 for b in betas),
                "two numbers in [0, 1)",
            ),
            ("optim.eps", optim.eps, _finite(optim.eps) and optim.eps > 0, "> 0"),
            (
                "optim.weight_decay",
                optim.weight_decay,
                _finite(optim.weight_decay) and optim.weight_decay >= 0,
                ">= 0",
            ),
            ("optim.min_lr_ratio", optim.min_lr_ratio, 0 <= optim.min_lr_ratio <= 1, "in [0, 1]"),
            ("optim.warmup_steps", optim.warmup_steps, optim.warmup_steps >= 0, ">= 0"),
            (
                "optim.max_grad_norm",
                optim.max_grad_norm,
                _finite(optim.max_grad_norm) and optim.max_grad_norm >= 0,
                ">= 0 (0: no clipping)",
            ),
        ]
    )
    check(
        optim.schedule in ("cosine", "constant"),
        f"optim.schedule={optim.schedule!r}: cosine|constant",
        errors,
    )
    # The schedule never reaches optim.lr if warmup does not end before the last step.
    check(
        max_steps <= 0 or optim.warmup_steps < max_steps,
        f"optim.warmup_steps={optim.warmup_steps} must be < trainer.max_steps={max_steps}: "
        "the learning rate would never reach optim.lr",
        errors,
    )
    return errors + _lr_scale_errors(optim.lr_scale, stage)


def _trainer_errors(cfg: TrainConfig, world_size: int) -> list[str]:
    trainer = cfg.trainer
    errors: list[str] = []
    check(
        trainer.log_every >= 1 and trainer.eval_every >= 0 and trainer.save_every >= 0,
        "trainer.log_every must be >= 1, eval_every and save_every >= 0",
        errors,
    )
    check(trainer.precision in ("auto", "fp32", "bf16"), "trainer.precision: auto|fp32|bf16", errors)
    check(
        cfg.data.packing in ("auto", "always", "never"),
        f"data.packing={cfg.data.packing!r}: use auto|always|never",
        errors,
    )
    check(
        trainer.activation_checkpointing in ACTIVATION_CHECKPOINTING,
        f"trainer.activation_checkpointing: {'|'.join(ACTIVATION_CHECKPOINTING)}",
        errors,
    )
    check(
        trainer.wandb.mode in ("offline", "online", "disabled"),
        "trainer.wandb.mode: offline|online|disabled",
        errors,
    )
    check(
        trainer.max_steps > 0 and trainer.micro_batch_size > 0,
        "max_steps and micro_batch_size must be > 0",
        errors,
    )
    try:
        accumulation_steps(trainer, world_size)
    except ValueError as err:
        errors.append(str(err))
    check(
        trainer.nonfinite in ("skip", "abort"),
        f"trainer.nonfinite={trainer.nonfinite!r}: skip|abort",
        errors,
    )
    return errors + _out_of_bounds(
        [
            ("trainer.eval_batches", trainer.eval_batches, trainer.eval_batches >= 0, ">= 0 (0: all)"),
            ("trainer.keep_last", trainer.keep_last, trainer.keep_last >= 1, ">= 1"),
            (
                "trainer.max_consecutive_skips",
                trainer.max_consecutive_skips,
                trainer.max_consecutive_skips >= 1,
                ">= 1",
            ),
            (
                "trainer.collective_timeout_s",
                trainer.collective_timeout_s,
                _finite(trainer.collective_timeout_s) and trainer.collective_timeout_s > 0,
                "a number of seconds > 0",
            ),
            (
                "trainer.step_timeout_s",
                trainer.step_timeout_s,
                _finite(trainer.step_timeout_s) and trainer.step_timeout_s >= 0,
                "a number of seconds >= 0 (0: off)",
            ),
        ]
    )


def _deepspeed_errors(ds: DeepSpeedConfig) -> list[str]:
    errors: list[str] = []
    check(ds.zero_stage in (0, 1, 2, 3), f"deepspeed.zero_stage must be 0-3, got {ds.zero_stage}", errors)
    check(
        not (ds.offload_optimizer and ds.zero_stage == 0),
        "deepspeed.offload_optimizer=true needs ZeRO 1-3 (deepspeed=zero2 or zero3_offload)",
        errors,
    )
    check(
        ds.reduce_bucket_size > 0,
        f"deepspeed.reduce_bucket_size must be > 0, got {ds.reduce_bucket_size}",
        errors,
    )
    return errors


def _run_errors(cfg: TrainConfig) -> list[str]:
    errors: list[str] = []
    check(bool(str(cfg.output_dir).strip()), "output_dir must not be empty", errors)
    if cfg.init_from is not None:
        _check_checkpoint(cfg.init_from, errors)
    check(
        cfg.resume in ("auto", "never") or Path(cfg.resume).exists(),
        f"resume={cfg.resume!r}: use auto, never or the path of a checkpoint folder (no such path)",
        errors,
    )
    for name in ("train_manifest", "dev_manifest") if cfg.data.mixture.sources is None else ("dev_manifest",):
        path = manifest_path(cfg, name)
        check(
            Path(path).is_file(),
            f"data.{name} {path} does not exist (prepare the data or set data.{name})",
            errors,
        )
    return errors


def validate(cfg: TrainConfig, world_size: int) -> None:
    """Every mistake found at once, in one ConfigError (a ValueError), before any model is built."""
    stage = cfg.stage
    if stage.name not in stage_names():
        raise ConfigError(
            "invalid training config", [f"unknown stage {stage.name!r}; choose one of {list(stage_names())}"]
        )
    schema = get_stage(stage.name).config
    if not isinstance(stage, schema):
        message = f"stage.name={stage.name} but the stage config is {type(stage).__name__}"
        raise ConfigError("invalid training config", [f"{message}: select it with stage={stage.name}"])
    errors = [
        *unknown_fields(cfg),
        *_stage_errors(cfg),
        *model_errors(cfg),
        *_data_errors(cfg.data),
        *_optim_errors(cfg.optim, cfg.stage, cfg.trainer.max_steps),
        *_deepspeed_errors(cfg.deepspeed),
        *_trainer_errors(cfg, world_size),
        *_run_errors(cfg),
        *mixture_errors(cfg),
        *augment_errors(getattr(cfg.stage, "augment", AugmentConfig())),
    ]
    if errors:
        raise ConfigError("invalid training config", errors)
