"""Typed configs of scripts/train.py (validated by lalm.config.validation and lalm.config.data_checks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from lalm.config.augment import AugmentConfig

# The stages (their names, config classes, record formats, collators) are registered in
# lalm.stages.registry, which imports the stage configs below.

# The keys of lalm.losses.preference.PREFERENCE_LOSSES (a test keeps them equal; the config does not
# import torch).
DPO_LOSSES = ("sigmoid", "ipo", "hinge", "robust")


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
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class SftStageConfig(StageConfig):
    """Chat-mode and analysis-mode examples drawn into the same batches with these weights.

    task_weights: within analysis mode, as for pretraining ({lid: 3}: each language-ID example three
    times as often as one of an unlisted task); the chat share stays chat_weight.
    """

    name: str = "sft"
    chat_weight: float = 0.5
    task_weights: dict[str, float] = field(default_factory=dict)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class DpoStageConfig(StageConfig):
    """DPO against a frozen reference (the init_from model). loss: sigmoid | ipo | hinge | robust.

    label_smoothing ε: with sigmoid, conservative DPO (cDPO), ε in [0, 0.5); robust (rDPO) needs ε in
    (0, 0.5), the share of preference labels assumed flipped; ipo and hinge do not use it.
    rpo_alpha > 0 adds that weight times the chosen response's per-token NLL (RPO, TRL's rpo_alpha).
    cache_reference: always computes the reference's log-probs once, at the start, into
    <run>/reference_logps.pt (lalm.training.reference_cache), and releases the reference model; never
    runs the reference forward in every step; auto caches when the run sees at least one epoch
    (max_steps x global_batch_size >= train pairs), where the one pass costs no more than live.
    """

    name: str = "dpo"
    beta: float = 0.1
    loss: str = "sigmoid"
    label_smoothing: float = 0.0
    rpo_alpha: float = 0.0
    cache_reference: str = "auto"  # auto | always | never


@dataclass
class MixtureSourceConfig:
    """One source of data.mixture: a train manifest, or a recipe's output folder (its
    <path>/<stage>/train.jsonl). name defaults to the folder above <stage>/ (or the folder itself);
    weight: this source's share of the draws, relative to the others' (None: from its size)."""

    path: str = MISSING
    weight: float | None = None
    name: str | None = None


@dataclass
class MixtureConfig:
    """Train on several manifests at once (lalm.data.mixture): each position of the sample stream
    draws a source by its weight, then the source's next example in its own shuffled passes.
    Without weights, a source's share is proportional to size^(1/temperature) (1: to its size)."""

    sources: list[MixtureSourceConfig] | None = None  # None: no mixture; [] is refused
    temperature: float = 1.0


@dataclass
class DataConfig:
    """Manifests default to <dir>/<stage>/{train,dev}.jsonl (the layout prepare_data.py writes).

    mixture.sources: several train manifests with weights instead of the one train manifest (the dev
    manifest stays <dir>/<stage>/dev.jsonl or dev_manifest). root: a folder that data configs refer
    to as ${data.root} (configs/data/report_*_mix.yaml: recipe outputs under it).
    """

    dir: str = MISSING
    root: str | None = None
    mixture: MixtureConfig = field(default_factory=MixtureConfig)
    train_manifest: str | None = None
    dev_manifest: str | None = None
    max_length: int = 1024
    # Rows of a micro-batch end to end without padding (lalm.data.packing): same loss and gradients,
    # no compute on pads. auto: only where the LLM runs flash-attention (varlen kernels); with sdpa or
    # eager a packed row attends through a block-diagonal (T, T) mask, which measured slower than
    # padding on CPU (PERF.md). always | never force it.
    packing: str = "auto"
    # DataLoader worker processes per rank (collation off the training loop); -1: one per core of the
    # rank's share beyond its own, at most 4 (0 on a 2-core machine running 2 ranks, where workers
    # would take cores from the compute: measured 33% slower there, PERF.md).
    num_workers: int = -1
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
    # A clip longer than the encoder's window (30 s for Qwen2-Audio) is cut into windows that overlap
    # by this many seconds, all filling its one audio span (lalm.data.features); one longer than
    # max_audio_seconds is skipped as `audio_longer_than_max_audio_seconds` (600: CollatorConfig's
    # default, 15,000 audio tokens).
    long_audio_overlap_s: float = 0.0
    max_audio_seconds: float = 600.0


@dataclass
class LrScaleConfig:
    """Each part's learning rate as a multiple of optim.lr. encoder: the audio tower and the CTC head;
    projector; llm: the language model with its LM head, and LoRA's adapters (lalm.training.params).

    The schedule multiplies every part's rate alike, and AdamW's decoupled weight decay, lr x
    weight_decay, scales with it. To freeze a part use stage.train_<part>=false, not a scale of 0.
    """

    encoder: float = 1.0
    projector: float = 1.0
    llm: float = 1.0


@dataclass
class OptimConfig:
    """AdamW and its schedule (linear warmup, then cosine to min_lr_ratio * lr, or constant).

    lr_scale: per-part multiples of lr, e.g. optim.lr_scale.encoder=0.1 for a pretrained encoder.
    """

    lr: float = 1e-4
    lr_scale: LrScaleConfig = field(default_factory=LrScaleConfig)
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
    # ZeRO-3: load checkpoints (model.builder=pretrained, init_from, the DPO reference) inside
    # deepspeed.zero.Init, straight into each rank's shard. Off by default: transformers 5 already maps
    # checkpoints without copying them (measured: +21 MiB of host memory per rank for a 212 MiB
    # checkpoint), and zero.Init costs more host memory on CPU; it avoids a whole copy per GPU at start.
    zero_init: bool = False


@dataclass
class WandbConfig:
    mode: str = "offline"  # offline | online | disabled
    project: str = "lalm"
    name: str | None = None


ACTIVATION_CHECKPOINTING = ("none", "full", "llm", "encoder")  # trainer.activation_checkpointing


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
    # Recompute each transformer layer's activations in backward instead of keeping them: none | full
    # (encoder and LLM layers) | llm | encoder. Same result, less memory, ~30% more compute.
    activation_checkpointing: str = "none"
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


def manifest_path(cfg: TrainConfig, name: str) -> str:
    explicit = getattr(cfg.data, name)
    split = "train" if name == "train_manifest" else "dev"
    return explicit or str(Path(cfg.data.dir) / cfg.stage.name / f"{split}.jsonl")
