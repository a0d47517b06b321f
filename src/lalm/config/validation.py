"""validate(): every mistake of a TrainConfig at once, before anything is allocated.

What only the manifests reveal (lengths, task weights against the data) is lalm.config.data_checks.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from lalm.config.augment import AugmentConfig, augment_errors
from lalm.config.checks import did_you_mean, unknown_fields
from lalm.config.mixture_checks import check, mixture_errors
from lalm.config.mixture_checks import finite as _finite
from lalm.config.model import FromComponentsConfig, PretrainedModelConfig, TinyModelConfig
from lalm.config.train import (
    ACTIVATION_CHECKPOINTING,
    DPO_LOSSES,
    DataConfig,
    DeepSpeedConfig,
    DpoStageConfig,
    LoraConfig,
    LrScaleConfig,
    OptimConfig,
    PretrainStageConfig,
    SftStageConfig,
    StageConfig,
    TrainConfig,
    accumulation_steps,
    manifest_path,
)
from lalm.data.tasks import task_names
from lalm.errors import ConfigError
from lalm.stages.registry import get_stage, stage_names


def _check_checkpoint(path: str, errors: list[str]) -> None:
    if not (Path(path) / "config.json").is_file():
        errors.append(
            f"init_from={path!r} is not a model checkpoint (no config.json): run the previous stage first"
        )


Bound = tuple[str, Any, bool, str]  # (setting, value, whether it is acceptable, what it must be)


def _out_of_bounds(bounds: list[Bound]) -> list[str]:
    return [f"{name} must be {want}, got {value}" for name, value, ok, want in bounds if not ok]


def _dpo_errors(cfg: TrainConfig) -> list[str]:
    stage = cfg.stage
    errors: list[str] = []
    check(
        cfg.init_from is not None,
        "stage=dpo needs init_from=<sft output>/sft/final (policy and reference)",
        errors,
    )
    check(stage.loss in DPO_LOSSES, f"stage.loss={stage.loss!r}: use {'|'.join(DPO_LOSSES)}", errors)
    check(_finite(stage.beta) and stage.beta > 0, f"stage.beta must be > 0, got {stage.beta}", errors)
    if stage.loss == "robust":
        # ε = 0 makes robust DPO plain DPO: almost surely the default left in place, not a choice.
        check(
            0 < stage.label_smoothing < 0.5,
            "stage.loss=robust needs stage.label_smoothing in (0, 0.5), the share of preference labels "
            f"assumed flipped (e.g. 0.1), got {stage.label_smoothing}; with 0 it is stage.loss=sigmoid",
            errors,
        )
    else:
        check(0 <= stage.label_smoothing < 0.5, "stage.label_smoothing must be in [0, 0.5)", errors)
    check(stage.rpo_alpha >= 0, f"stage.rpo_alpha must be >= 0, got {stage.rpo_alpha}", errors)
    check(
        stage.cache_reference in ("auto", "always", "never"),
        f"stage.cache_reference={stage.cache_reference!r}: use auto|always|never",
        errors,
    )
    return errors


def _language_modeling_errors(stage: PretrainStageConfig | SftStageConfig) -> list[str]:
    """task_weights (both stages), ctc_weight (pretraining) and chat_weight (SFT)."""
    errors: list[str] = []
    weights = dict(stage.task_weights)
    check(
        all(_finite(w) and w >= 0 for w in weights.values()),
        f"stage.task_weights must be >= 0, got {weights}",
        errors,
    )
    if isinstance(stage, SftStageConfig):
        # SFT tasks are free labels, checked against the manifest by validate_data.
        check(
            0 <= stage.chat_weight <= 1,
            f"stage.chat_weight must be in [0, 1], got {stage.chat_weight}",
            errors,
        )
        return errors
    # Tasks come from the registry (lalm.data.tasks).
    tasks = task_names()
    left_out = {task for task, weight in weights.items() if weight == 0}
    check(bool(set(tasks) - left_out), f"stage.task_weights must leave some task in, got {weights}", errors)
    for task in sorted(set(weights) - set(tasks)):
        errors.append(
            f"stage.task_weights names unknown tasks [{task!r}]{did_you_mean(task, tasks)}; "
            f"tasks are {list(tasks)}"
        )
    check(
        _finite(stage.ctc_weight) and stage.ctc_weight >= 0,
        f"stage.ctc_weight must be >= 0, got {stage.ctc_weight}",
        errors,
    )
    return errors


def _trainable_errors(cfg: TrainConfig) -> list[str]:
    stage = cfg.stage
    errors: list[str] = []
    check(
        stage.train_encoder or stage.train_projector or stage.train_llm or stage.lora.enabled,
        "nothing to train: enable stage.train_encoder, train_projector, train_llm or lora",
        errors,
    )
    check(
        not (stage.name == "dpo" and stage.lora.enabled and (stage.train_encoder or stage.train_projector)),
        "DPO with LoRA uses the policy without adapters as its reference, so only adapters may train: "
        "set stage.train_encoder=false stage.train_projector=false",
        errors,
    )
    return errors + _lora_errors(stage.lora)


def _stage_errors(cfg: TrainConfig) -> list[str]:
    stage = cfg.stage
    specific = _dpo_errors(cfg) if isinstance(stage, DpoStageConfig) else _language_modeling_errors(stage)
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


def _model_errors(cfg: TrainConfig) -> list[str]:
    """The model group's values (init_from, when given, replaces the model group)."""
    model = cfg.model
    if cfg.init_from is not None:
        return []
    if isinstance(model, PretrainedModelConfig):
        errors: list[str] = []
        if not (Path(model.path) / "config.json").is_file():
            errors.append(f"model.path={model.path!r} is not a model checkpoint (no config.json)")
        return errors
    if isinstance(model, FromComponentsConfig):
        return [
            f"model.{name}={getattr(model, name)!r} is not a directory"
            for name in ("whisper_dir", "llm_dir")
            if not Path(getattr(model, name)).is_dir()
        ]
    if isinstance(model, TinyModelConfig):
        return _tiny_model_errors(model)
    return [f"model: unknown model config {type(model).__name__}; select it with model=tiny|pretrained|..."]


def _tiny_model_errors(model: TinyModelConfig) -> list[str]:
    # Every integer of the tiny model is a size or a count, except the seed.
    sizes = [
        f.name for f in fields(model) if f.type in (int, "int") and f.name not in ("seed", "embedding_rows")
    ]
    errors = [f"model.{n} must be > 0, got {getattr(model, n)}" for n in sizes if getattr(model, n) <= 0]
    check(model.embedding_rows >= 0, f"model.embedding_rows must be >= 0, got {model.embedding_rows}", errors)
    check(
        model.init_device in ("cpu", "cuda"),
        f"model.init_device={model.init_device!r}: cpu|cuda (cuda only where there is a GPU)",
        errors,
    )
    if errors:
        return errors
    for whole, part in (
        ("encoder_dim", "encoder_heads"),
        ("llm_hidden_size", "llm_heads"),
        ("llm_heads", "llm_kv_heads"),
    ):
        check(
            getattr(model, whole) % getattr(model, part) == 0,
            f"model.{whole}={getattr(model, whole)} must be a multiple of model.{part}={getattr(model, part)}",
            errors,
        )
    for path in model.tokenizer_corpus:
        check(Path(path).is_file(), f"model.tokenizer_corpus: {path} does not exist", errors)
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
        *_model_errors(cfg),
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
