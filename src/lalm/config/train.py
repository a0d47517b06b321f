"""Typed configs of scripts/train.py and their validation (run once, before anything is allocated)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from lalm.data.prompts import TASKS

STAGE_NAMES = ("pretrain", "sft", "dpo")


@dataclass
class LoraConfig:
    """LoRA adapters (peft) on the LLM; the encoder/projector flags of the stage still apply."""

    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


@dataclass
class StageConfig:
    """What a stage trains. Pretraining follows the report: encoder and LLM both trainable."""

    name: str = MISSING
    train_encoder: bool = True
    train_projector: bool = True
    train_llm: bool = True
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class PretrainStageConfig(StageConfig):
    """ctc_weight > 0 adds an auxiliary CTC loss on the encoder output for ASR examples (training
    only, dropped at export): it makes a model trained from scratch listen sooner (lalm.stages.ctc).

    task_weights: how often an example of each task is drawn relative to the others ({} = every
    example equally often, in shuffled epochs). {asr: 3} draws each ASR example three times as often
    as an example of an unlisted task (weight 1); 0 leaves a task out.
    """

    name: str = "pretrain"
    ctc_weight: float = 0.0
    task_weights: dict[str, float] = field(default_factory=dict)


@dataclass
class SftStageConfig(StageConfig):
    """Chat-mode and analysis-mode examples drawn into the same batches with these weights.

    task_weights: within analysis mode, as for pretraining ({lid: 3}: each language-ID example three
    times as often as one of an unlisted task); the chat share stays chat_weight.
    """

    name: str = "sft"
    chat_weight: float = 0.5
    task_weights: dict[str, float] = field(default_factory=dict)


@dataclass
class DpoStageConfig(StageConfig):
    """DPO against a frozen reference (the init_from model). loss: sigmoid | ipo | hinge.

    rpo_alpha > 0 adds that weight times the chosen response's per-token NLL (RPO, TRL's rpo_alpha).
    """

    name: str = "dpo"
    beta: float = 0.1
    loss: str = "sigmoid"
    label_smoothing: float = 0.0
    rpo_alpha: float = 0.0


@dataclass
class DataConfig:
    """Manifests default to <dir>/<stage>/{train,dev}.jsonl (the layout prepare_data.py writes)."""

    dir: str = MISSING
    train_manifest: str | None = None
    dev_manifest: str | None = None
    max_length: int = 1024
    num_workers: int = 0
    prompt_seed: int = 0
    # > 0: sort this many global batches at a time by length, so a batch pads less (seekable, see
    # lalm.data.sampling.LengthGroupedStream); 0 keeps the stage's own order.
    length_groups: int = 0
    # Bad examples (unreadable, truncated, NaN audio, too long...) are skipped, counted and named in
    # <run>/bad_examples.jsonl; the run aborts once more than this share of the manifest is bad.
    max_bad_fraction: float = 0.01
    # A clip whose decoded length differs from its manifest `duration` by more than this many
    # seconds is skipped as `duration_mismatch` (the file changed since the manifest was written).
    duration_tolerance_s: float = 0.1


@dataclass
class OptimConfig:
    """AdamW and its schedule (linear warmup, then cosine to min_lr_ratio * lr, or constant)."""

    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-8
    schedule: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    max_grad_norm: float = 1.0


@dataclass
class DeepSpeedConfig:
    """Engine settings only: learning rate, batch sizes and schedule come from lalm's own config."""

    zero_stage: int = 2
    offload_optimizer: bool = False
    overlap_comm: bool = False
    contiguous_gradients: bool = True
    reduce_bucket_size: int = 50_000_000


@dataclass
class WandbConfig:
    mode: str = "offline"  # offline | online | disabled
    project: str = "lalm"
    name: str | None = None


@dataclass
class TrainerConfig:
    """global_batch_size = micro_batch_size x ranks x accumulation steps (must divide exactly)."""

    max_steps: int = 100
    micro_batch_size: int = 4
    global_batch_size: int = 8
    eval_every: int = 50
    eval_batches: int = 0  # 0: the whole dev manifest
    log_every: int = 1
    save_every: int = 0  # 0: only the final export (and a checkpoint on preemption)
    keep_last: int = 2  # complete checkpoints kept; older ones are deleted once a newer one is complete
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16
    seed: int = 0
    progress_bar: bool = True
    wandb: WandbConfig = field(default_factory=WandbConfig)
    # A step whose loss or gradient norm is not finite on any rank: skip (counted, logged as
    # skipped: true, the LR schedule still advances) or abort. Skips in a row beyond the limit abort.
    nonfinite: str = "skip"
    max_consecutive_skips: int = 5
    # torch.distributed's timeout for the process group and every collective, and the watchdog that
    # turns a step (or evaluation, or save) stuck for longer into an error naming the rank and step.
    collective_timeout_s: float = 1800.0
    step_timeout_s: float = 3600.0


@dataclass
class TrainConfig:
    stage: Any = MISSING
    model: Any = MISSING
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    output_dir: str = MISSING
    init_from: str | None = None
    experiment: str | None = None
    # auto: continue from the newest complete checkpoint of <output_dir>/<stage>/ if there is one,
    # else start fresh; never: refuse a folder that already holds a run; a path: load that checkpoint.
    resume: str = "auto"


def accumulation_steps(trainer: TrainerConfig, world_size: int) -> int:
    per_step = trainer.micro_batch_size * world_size
    if per_step <= 0 or trainer.global_batch_size <= 0:
        raise ValueError(
            f"trainer.micro_batch_size ({trainer.micro_batch_size}) and global_batch_size "
            f"({trainer.global_batch_size}) must be > 0"
        )
    if trainer.global_batch_size % per_step:
        raise ValueError(
            f"trainer.global_batch_size={trainer.global_batch_size} is not a multiple of micro_batch_size "
            f"({trainer.micro_batch_size}) x ranks ({world_size}) = {per_step}: change one of them"
        )
    return trainer.global_batch_size // per_step


def _check(condition: bool, message: str, errors: list[str]) -> None:
    if not condition:
        errors.append(message)


def _check_checkpoint(path: str, errors: list[str]) -> None:
    if not (Path(path) / "config.json").is_file():
        errors.append(
            f"init_from={path!r} is not a model checkpoint (no config.json): run the previous stage first"
        )


def validate(cfg: TrainConfig, world_size: int) -> None:
    """Every mistake found at once, in one error, before any model is built."""
    errors: list[str] = []
    stage = cfg.stage
    _check(
        stage.name in STAGE_NAMES, f"unknown stage {stage.name!r}; choose one of {list(STAGE_NAMES)}", errors
    )
    schema = {"pretrain": PretrainStageConfig, "sft": SftStageConfig, "dpo": DpoStageConfig}.get(stage.name)
    if schema is not None and not isinstance(stage, schema):
        message = f"stage.name={stage.name} but the stage config is {type(stage).__name__}"
        raise ValueError(f"invalid training config:\n  - {message}: select it with stage={stage.name}")
    if stage.name == "dpo":
        _check(
            cfg.init_from is not None,
            "stage=dpo needs init_from=<sft output>/sft/final (policy and reference)",
            errors,
        )
        _check(
            stage.loss in ("sigmoid", "ipo", "hinge"),
            f"stage.loss={stage.loss!r}: use sigmoid|ipo|hinge",
            errors,
        )
        _check(stage.beta > 0, f"stage.beta must be > 0, got {stage.beta}", errors)
        _check(0 <= stage.label_smoothing < 0.5, "stage.label_smoothing must be in [0, 0.5)", errors)
        _check(stage.rpo_alpha >= 0, f"stage.rpo_alpha must be >= 0, got {stage.rpo_alpha}", errors)
    if stage.name in ("pretrain", "sft"):
        weights = dict(stage.task_weights)
        _check(
            all(w >= 0 for w in weights.values()), f"stage.task_weights must be >= 0, got {weights}", errors
        )
    if stage.name == "pretrain":
        # Pretraining tasks are a fixed set; SFT tasks are free labels, checked against the manifest
        # when the stream is built (lalm.stages.lm.task_groups).
        left_out = {task for task, weight in weights.items() if weight == 0}
        _check(
            bool(set(TASKS) - left_out), f"stage.task_weights must leave some task in, got {weights}", errors
        )
        unknown = sorted(set(weights) - set(TASKS))
        _check(
            not unknown, f"stage.task_weights names unknown tasks {unknown}; tasks are {list(TASKS)}", errors
        )
    if stage.name == "sft":
        _check(
            0 <= stage.chat_weight <= 1,
            f"stage.chat_weight must be in [0, 1], got {stage.chat_weight}",
            errors,
        )
    if cfg.init_from is not None:
        _check_checkpoint(cfg.init_from, errors)
    _check(
        stage.train_encoder or stage.train_projector or stage.train_llm or stage.lora.enabled,
        "nothing to train: enable stage.train_encoder, train_projector, train_llm or lora",
        errors,
    )
    _check(
        not (stage.name == "dpo" and stage.lora.enabled and (stage.train_encoder or stage.train_projector)),
        "DPO with LoRA uses the policy without adapters as its reference, so only adapters may train: "
        "set stage.train_encoder=false stage.train_projector=false",
        errors,
    )
    _check(
        cfg.data.length_groups >= 0, f"data.length_groups must be >= 0, got {cfg.data.length_groups}", errors
    )
    _check(
        cfg.trainer.log_every >= 1 and cfg.trainer.eval_every >= 0 and cfg.trainer.save_every >= 0,
        "trainer.log_every must be >= 1, eval_every and save_every >= 0",
        errors,
    )
    _check(
        not (stage.lora.enabled and cfg.deepspeed.zero_stage == 3),
        "LoRA export under ZeRO-3 is not supported yet: use deepspeed=zero2",
        errors,
    )
    _check(
        cfg.deepspeed.zero_stage in (0, 1, 2, 3),
        f"deepspeed.zero_stage must be 0-3, got {cfg.deepspeed.zero_stage}",
        errors,
    )
    _check(
        cfg.optim.schedule in ("cosine", "constant"),
        f"optim.schedule={cfg.optim.schedule!r}: cosine|constant",
        errors,
    )
    _check(cfg.trainer.precision in ("auto", "fp32", "bf16"), "trainer.precision: auto|fp32|bf16", errors)
    _check(
        cfg.trainer.wandb.mode in ("offline", "online", "disabled"),
        "trainer.wandb.mode: offline|online|disabled",
        errors,
    )
    _check(
        cfg.trainer.max_steps > 0 and cfg.trainer.micro_batch_size > 0,
        "max_steps and micro_batch_size must be > 0",
        errors,
    )
    try:
        accumulation_steps(cfg.trainer, world_size)
    except ValueError as err:
        errors.append(str(err))
    for name in ("train_manifest", "dev_manifest"):
        path = manifest_path(cfg, name)
        _check(
            Path(path).is_file(),
            f"data.{name} {path} does not exist (prepare the data or set data.{name})",
            errors,
        )
    if errors:
        raise ValueError("invalid training config:\n  - " + "\n  - ".join(errors))


def manifest_path(cfg: TrainConfig, name: str) -> str:
    explicit = getattr(cfg.data, name)
    split = "train" if name == "train_manifest" else "dev"
    return explicit or str(Path(cfg.data.dir) / cfg.stage.name / f"{split}.jsonl")
