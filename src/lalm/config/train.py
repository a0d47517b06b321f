"""Typed configs of scripts/train.py and their validation (run once, before anything is allocated)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from lalm.config.checks import did_you_mean, unknown_fields
from lalm.config.model import FromComponentsConfig, PretrainedModelConfig, TinyModelConfig
from lalm.data.prompts import TASKS
from lalm.errors import ConfigError

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


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


Bound = tuple[str, Any, bool, str]  # (setting, value, whether it is acceptable, what it must be)


def _out_of_bounds(bounds: list[Bound]) -> list[str]:
    return [f"{name} must be {want}, got {value}" for name, value, ok, want in bounds if not ok]


def _dpo_errors(cfg: TrainConfig) -> list[str]:
    stage = cfg.stage
    errors: list[str] = []
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
    _check(_finite(stage.beta) and stage.beta > 0, f"stage.beta must be > 0, got {stage.beta}", errors)
    _check(0 <= stage.label_smoothing < 0.5, "stage.label_smoothing must be in [0, 0.5)", errors)
    _check(stage.rpo_alpha >= 0, f"stage.rpo_alpha must be >= 0, got {stage.rpo_alpha}", errors)
    return errors


def _language_modeling_errors(stage: PretrainStageConfig | SftStageConfig) -> list[str]:
    """task_weights (both stages), ctc_weight (pretraining) and chat_weight (SFT)."""
    errors: list[str] = []
    weights = dict(stage.task_weights)
    _check(
        all(_finite(w) and w >= 0 for w in weights.values()),
        f"stage.task_weights must be >= 0, got {weights}",
        errors,
    )
    if isinstance(stage, SftStageConfig):
        # SFT tasks are free labels, checked against the manifest by validate_data.
        _check(
            0 <= stage.chat_weight <= 1,
            f"stage.chat_weight must be in [0, 1], got {stage.chat_weight}",
            errors,
        )
        return errors
    # Pretraining tasks are a fixed set.
    left_out = {task for task, weight in weights.items() if weight == 0}
    _check(bool(set(TASKS) - left_out), f"stage.task_weights must leave some task in, got {weights}", errors)
    for task in sorted(set(weights) - set(TASKS)):
        errors.append(
            f"stage.task_weights names unknown tasks [{task!r}]{did_you_mean(task, TASKS)}; "
            f"tasks are {list(TASKS)}"
        )
    _check(
        _finite(stage.ctc_weight) and stage.ctc_weight >= 0,
        f"stage.ctc_weight must be >= 0, got {stage.ctc_weight}",
        errors,
    )
    return errors


def _trainable_errors(cfg: TrainConfig) -> list[str]:
    stage = cfg.stage
    errors: list[str] = []
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
        not (stage.lora.enabled and cfg.deepspeed.zero_stage == 3),
        "LoRA export under ZeRO-3 is not supported yet: use deepspeed=zero2",
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
            ("data.num_workers", data.num_workers, data.num_workers >= 0, ">= 0"),
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
        ]
    )


def _optim_errors(optim: OptimConfig, max_steps: int) -> list[str]:
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
    _check(
        optim.schedule in ("cosine", "constant"),
        f"optim.schedule={optim.schedule!r}: cosine|constant",
        errors,
    )
    # The schedule never reaches optim.lr if warmup does not end before the last step.
    _check(
        max_steps <= 0 or optim.warmup_steps < max_steps,
        f"optim.warmup_steps={optim.warmup_steps} must be < trainer.max_steps={max_steps}: "
        "the learning rate would never reach optim.lr",
        errors,
    )
    return errors


def _trainer_errors(cfg: TrainConfig, world_size: int) -> list[str]:
    trainer = cfg.trainer
    errors: list[str] = []
    _check(
        trainer.log_every >= 1 and trainer.eval_every >= 0 and trainer.save_every >= 0,
        "trainer.log_every must be >= 1, eval_every and save_every >= 0",
        errors,
    )
    _check(trainer.precision in ("auto", "fp32", "bf16"), "trainer.precision: auto|fp32|bf16", errors)
    _check(
        trainer.wandb.mode in ("offline", "online", "disabled"),
        "trainer.wandb.mode: offline|online|disabled",
        errors,
    )
    _check(
        trainer.max_steps > 0 and trainer.micro_batch_size > 0,
        "max_steps and micro_batch_size must be > 0",
        errors,
    )
    try:
        accumulation_steps(trainer, world_size)
    except ValueError as err:
        errors.append(str(err))
    _check(
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
    _check(ds.zero_stage in (0, 1, 2, 3), f"deepspeed.zero_stage must be 0-3, got {ds.zero_stage}", errors)
    _check(
        not (ds.offload_optimizer and ds.zero_stage == 0),
        "deepspeed.offload_optimizer=true needs ZeRO 1-3 (deepspeed=zero2 or zero3_offload)",
        errors,
    )
    _check(
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
    sizes = [f.name for f in fields(model) if f.type in (int, "int") and f.name != "seed"]
    errors = [f"model.{n} must be > 0, got {getattr(model, n)}" for n in sizes if getattr(model, n) <= 0]
    if errors:
        return errors
    for whole, part in (
        ("encoder_dim", "encoder_heads"),
        ("llm_hidden_size", "llm_heads"),
        ("llm_heads", "llm_kv_heads"),
    ):
        _check(
            getattr(model, whole) % getattr(model, part) == 0,
            f"model.{whole}={getattr(model, whole)} must be a multiple of model.{part}={getattr(model, part)}",
            errors,
        )
    for path in model.tokenizer_corpus:
        _check(Path(path).is_file(), f"model.tokenizer_corpus: {path} does not exist", errors)
    return errors


def _run_errors(cfg: TrainConfig) -> list[str]:
    errors: list[str] = []
    _check(bool(str(cfg.output_dir).strip()), "output_dir must not be empty", errors)
    if cfg.init_from is not None:
        _check_checkpoint(cfg.init_from, errors)
    _check(
        cfg.resume in ("auto", "never") or Path(cfg.resume).exists(),
        f"resume={cfg.resume!r}: use auto, never or the path of a checkpoint folder (no such path)",
        errors,
    )
    for name in ("train_manifest", "dev_manifest"):
        path = manifest_path(cfg, name)
        _check(
            Path(path).is_file(),
            f"data.{name} {path} does not exist (prepare the data or set data.{name})",
            errors,
        )
    return errors


def validate(cfg: TrainConfig, world_size: int) -> None:
    """Every mistake found at once, in one ConfigError (a ValueError), before any model is built."""
    stage = cfg.stage
    if stage.name not in STAGE_NAMES:
        raise ConfigError(
            "invalid training config", [f"unknown stage {stage.name!r}; choose one of {list(STAGE_NAMES)}"]
        )
    schema = {"pretrain": PretrainStageConfig, "sft": SftStageConfig, "dpo": DpoStageConfig}[stage.name]
    if not isinstance(stage, schema):
        message = f"stage.name={stage.name} but the stage config is {type(stage).__name__}"
        raise ConfigError("invalid training config", [f"{message}: select it with stage={stage.name}"])
    errors = [
        *unknown_fields(cfg),
        *_stage_errors(cfg),
        *_model_errors(cfg),
        *_data_errors(cfg.data),
        *_optim_errors(cfg.optim, cfg.trainer.max_steps),
        *_deepspeed_errors(cfg.deepspeed),
        *_trainer_errors(cfg, world_size),
        *_run_errors(cfg),
    ]
    if errors:
        raise ConfigError("invalid training config", errors)


# Lower bounds on an example's length in tokens, whatever the tokenizer: every rendered message has
# <|im_start|>, its role line and <|im_end|>; every clip <|audio_bos|> and <|audio_eos|> around its
# <|AUDIO|> tokens; and a conversation without a system turn gets the default one (lalm.data.chat).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_CLIP = 2
HOP_LENGTH = 160  # mel hop at 16 kHz (Whisper's and the tiny model's feature extractor): 100 frames/s


def _fewest_samples(ref: dict[str, Any], tolerance_s: float) -> int:
    """The fewest 16-kHz samples a clip decodes to: it may fall short of its manifest duration by up
    to tolerance_s (more is dropped as duration_mismatch). Without a duration, no bound (0)."""
    from lalm.data.audio import SAMPLE_RATE  # imported here: lalm.data loads numpy and soundfile

    duration = ref.get("duration")
    return 0 if duration is None else max(0, math.floor((duration - tolerance_s) * SAMPLE_RATE))


def _audio_tokens(samples: int) -> int:
    # Imported here: lalm.data.chat loads torch and transformers, which composing a config must not wait for.
    from lalm.data.chat import audio_token_count, mel_frame_count

    return max(0, audio_token_count(mel_frame_count(samples, HOP_LENGTH))) if samples > 0 else 0


def fewest_tokens(messages: list[dict[str, Any]], tolerance_s: float) -> tuple[int, int]:
    """(a lower bound on the tokens of a rendered conversation, the fewest samples of its longest
    clip), from normalised manifest messages. Never above the collator's count, so a config refused
    on it cannot work (tests compare it with the real collator)."""
    has_system = bool(messages) and messages[0]["role"] == "system"
    tokens = (len(messages) + (0 if has_system else 1)) * TOKENS_PER_MESSAGE
    longest = 0
    for message in messages:
        for item in message["content"]:
            if item["type"] == "audio":
                samples = _fewest_samples(item["audio"], tolerance_s)
                tokens += TOKENS_PER_CLIP + _audio_tokens(samples)
                longest = max(longest, samples)
    return tokens, longest


def example_bounds(stage: str, records: Any, tolerance_s: float) -> Iterator[tuple[int, int]]:
    """fewest_tokens of each record of a validated manifest (`datasets.Dataset`), rendered as the
    stage's collator renders it (text left out: it only adds tokens; DPO: the prompt and one response)."""
    column = {"pretrain": "audio", "sft": "messages", "dpo": "prompt"}[stage]
    assistant: dict[str, Any] = {"role": "assistant", "content": []}
    for batch in records.select_columns([column]).iter(batch_size=1024):
        for value in batch[column]:
            if stage == "pretrain":
                messages = [{"role": "user", "content": [{"type": "audio", "audio": value}]}, assistant]
            else:
                messages = [*value, assistant] if stage == "dpo" else value
            yield fewest_tokens(messages, tolerance_s)


def _window_samples(cfg: TrainConfig) -> int | None:
    """The encoder's window in samples (a longer clip drops its example), where the config tells
    without loading a model: the tiny model's window_seconds, or a checkpoint's preprocessor_config."""
    from lalm.data.audio import SAMPLE_RATE

    if cfg.init_from is None and isinstance(cfg.model, TinyModelConfig):
        return cfg.model.window_seconds * SAMPLE_RATE
    folder = cfg.init_from or getattr(cfg.model, "path", None) or getattr(cfg.model, "whisper_dir", None)
    try:
        extractor = json.loads((Path(str(folder)) / "preprocessor_config.json").read_text())
        return int(extractor["n_samples"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _length_errors(cfg: TrainConfig, records: Any, name: str) -> list[str]:
    """A manifest none of whose examples fits data.max_length and the encoder's window: every one
    would be dropped by the collator."""
    limit, window = cfg.data.max_length, _window_samples(cfg)
    fewest_tokens_seen, fits_window, fits_length = None, False, False
    for tokens, longest in example_bounds(cfg.stage.name, records, cfg.data.duration_tolerance_s):
        in_window = window is None or longest <= window
        if in_window and tokens <= limit:
            return []
        fits_window |= in_window
        fits_length |= tokens <= limit
        fewest_tokens_seen = tokens if fewest_tokens_seen is None else min(fewest_tokens_seen, tokens)
    path = manifest_path(cfg, name)
    if not fits_length:
        return [
            f"data.max_length={limit} is shorter than every example of {path} (the shortest needs at "
            f"least {fewest_tokens_seen} tokens): raise data.max_length"
        ]
    if not fits_window:
        return [f"every example of {path} has a clip longer than the encoder's window ({window} samples)"]
    return [
        f"no example of {path} fits both data.max_length={limit} and the encoder's window ({window} "
        "samples): the short enough ones have clips too long for the window"
    ]


def _task_weight_errors(weights: dict[str, float], tasks: list[str | None], where: str) -> list[str]:
    """task_weights against the tasks a manifest has (lalm.stages.lm.task_groups would refuse later)."""
    present = sorted({t for t in tasks if t is not None})
    errors = [
        f"stage.task_weights names {task!r}{did_you_mean(task, present)}, which {where} does not have; "
        f"its tasks are {present}"
        for task in sorted(set(weights) - set(present))
    ]
    if tasks and not errors and sum(weights.get(t, 1.0) if t is not None else 1.0 for t in tasks) <= 0:
        errors.append(f"stage.task_weights {weights} leaves none of the tasks of {where} in")
    return errors


def _mixture_errors(cfg: TrainConfig, records: Any) -> list[str]:
    """What the stage's sampling stream draws from must exist in the train manifest."""
    stage = cfg.stage
    path = manifest_path(cfg, "train_manifest")
    weights = dict(getattr(stage, "task_weights", {}))
    if stage.name == "pretrain":
        return _task_weight_errors(weights, list(records["task"]), path) if weights else []
    if stage.name != "sft":
        return []
    modes, tasks = list(records["mode"]), list(records["task"])
    analysis = [task for mode, task in zip(modes, tasks, strict=True) if mode == "analysis"]
    errors: list[str] = []
    _check(
        stage.chat_weight == 0 or "chat" in modes,
        f"stage.chat_weight={stage.chat_weight} but {path} has no chat-mode examples: set stage.chat_weight=0",
        errors,
    )
    _check(
        stage.chat_weight == 1 or bool(analysis),
        f"stage.chat_weight={stage.chat_weight} leaves {1 - stage.chat_weight:g} of each batch to analysis "
        f"mode, but {path} has no analysis-mode examples: set stage.chat_weight=1",
        errors,
    )
    if weights:  # the stream groups analysis mode by task whatever chat_weight is
        errors += _task_weight_errors(weights, analysis, f"analysis mode of {path}")
    return errors


def validate_data(cfg: TrainConfig, train_records: Any, dev_records: Any) -> None:
    """Config mistakes only the manifests reveal, all in one ConfigError, before any model is built:
    a data.max_length (or encoder window) no example fits, stage.task_weights naming a task the train
    manifest does not have, an SFT chat_weight asking for a mode with no examples.

    The records are the validated manifests (`datasets.Dataset`, as load_manifest returns them).
    Lengths are lower bounds (see fewest_tokens), so a config that can work is never refused.
    """
    errors = [
        *_length_errors(cfg, train_records, "train_manifest"),
        *_length_errors(cfg, dev_records, "dev_manifest"),
        *_mixture_errors(cfg, train_records),
    ]
    if errors:
        raise ConfigError("the config does not fit the data", errors)


def manifest_path(cfg: TrainConfig, name: str) -> str:
    explicit = getattr(cfg.data, name)
    split = "train" if name == "train_manifest" else "dev"
    return explicit or str(Path(cfg.data.dir) / cfg.stage.name / f"{split}.jsonl")
