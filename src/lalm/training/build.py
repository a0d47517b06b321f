"""From a validated TrainConfig to a ready Trainer: model(s), engine(s), stage, data, logger."""

from __future__ import annotations

import atexit
import json
import os
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
from transformers.integrations.deepspeed import HfDeepSpeedConfig, unset_hf_deepspeed_config

from lalm.config.data_checks import validate_data
from lalm.config.model import PretrainedModelConfig, TinyModelConfig
from lalm.config.train import DpoStageConfig, TrainConfig, accumulation_steps, manifest_path
from lalm.config.validation import validate
from lalm.data.collators import CollatorConfig
from lalm.data.dataset import ManifestDataset
from lalm.data.manifest import read_manifest_records
from lalm.data.mixture import Mixture, load_mixture, resolve_sources
from lalm.models.builders import build_model
from lalm.models.tokenizer import SPECIAL_TOKENS
from lalm.models.training import AudioLanguageModel, build_ctc_head, enable_activation_checkpointing
from lalm.stages.base import Stage
from lalm.stages.dpo import DpoStage
from lalm.stages.lm import LanguageModelingStage
from lalm.stages.registry import build_collator, get_stage, load, stage_names
from lalm.training.checkpoint import CheckpointError, read_state
from lalm.training.distributed import barrier, from_main, init_distributed, is_main, world_size
from lalm.training.engine import deepspeed_config, initialize_engine, initialize_reference
from lalm.training.exits import EXIT_CONFIG, EXIT_LOCKED, TrainingExit
from lalm.training.flops import step_flops
from lalm.training.logging import MetricsLogger
from lalm.training.params import prepare_trainable
from lalm.training.reference_cache import (
    StaleReferenceCache,
    cache_run,
    prepare_cache,
    uses_reference_cache,
)
from lalm.training.run_folder import (
    ResumePlan,
    RunFolderError,
    RunLock,
    data_fingerprint,
    mixture_fingerprint,
    plan_resume,
    prepare_logs,
)
from lalm.training.trainer import DataSources, RunContext, Trainer
from lalm.training.universal import needs_universal, to_universal, universal_checkpoint_config


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_manifests(data_dir: str | Path) -> list[str]:
    """The train manifests of every stage found under a corpus folder (the tiny tokenizer's text)."""
    paths = [Path(data_dir) / stage / "train.jsonl" for stage in stage_names()]
    return [str(p) for p in paths if p.is_file()]


def model_config(cfg: TrainConfig) -> Any:
    """init_from (a previous stage's final/) wins over the model group; a tiny model with no tokenizer
    corpus trains its tokenizer on the data directory's train manifests."""
    if cfg.init_from is not None:
        return PretrainedModelConfig(path=cfg.init_from)
    if isinstance(cfg.model, TinyModelConfig) and not cfg.model.tokenizer_corpus:
        return replace(cfg.model, tokenizer_corpus=train_manifests(cfg.data.dir))
    return cfg.model


def build_stage(cfg: TrainConfig, special_ids: tuple[int, ...] = ()) -> tuple[Stage, Any]:
    """The stage plug-in, and for DPO without LoRA the frozen reference model (not yet wrapped): the
    stage's `build_stage` (lalm.stages.registry)."""
    return load(get_stage(cfg.stage.name).build_stage)(cfg, special_ids)


def build_lm_stage(cfg: TrainConfig, special_ids: tuple[int, ...] = ()) -> tuple[Stage, None]:
    """Pretraining and SFT: next-token loss. The stage config says what else applies: SFT's
    chat_weight (chat vs analysis mode), pretraining's ctc_weight, both stages' task_weights."""
    chat_weight = getattr(cfg.stage, "chat_weight", None)
    ctc_weight = getattr(cfg.stage, "ctc_weight", 0.0)
    task_weights = dict(getattr(cfg.stage, "task_weights", {}))
    stage = LanguageModelingStage(cfg.stage.name, chat_weight, ctc_weight, special_ids, task_weights)
    return stage, None


def build_dpo_stage(cfg: TrainConfig, special_ids: tuple[int, ...] = ()) -> tuple[Stage, Any]:
    """DPO, and without LoRA its frozen reference: the init_from model, built again."""
    assert cfg.init_from is not None and isinstance(cfg.stage, DpoStageConfig)  # validate() guarantees it
    reference = None
    if not cfg.stage.lora.enabled:
        reference = build_model(PretrainedModelConfig(path=cfg.init_from))[0]
    return DpoStage(cfg.stage, None), reference


def collator_config(cfg: TrainConfig, model: Any) -> CollatorConfig:
    """The collator settings of a run (the trainer's and scripts/precompute_reference.py's alike, so a
    precomputed reference cache is of the same tokens)."""
    return CollatorConfig(
        max_length=cfg.data.max_length,
        pack=uses_packing(cfg.data.packing, model),
        long_audio_overlap_s=cfg.data.long_audio_overlap_s,
        max_audio_seconds=cfg.data.max_audio_seconds,
    )


def load_data(cfg: TrainConfig) -> tuple[ManifestDataset, ManifestDataset]:
    """Train and dev manifests, every line checked (all bad lines named at once), before anything
    is built: a data mistake costs seconds, not a model build."""
    train, dev, _ = load_datasets(cfg)
    return train, dev


def _load_manifest(cfg: TrainConfig, name: str) -> ManifestDataset:
    return ManifestDataset.from_manifest(
        manifest_path(cfg, name),
        cfg.stage.name,
        cfg.data.prompt_seed,
        duration_tolerance_s=cfg.data.duration_tolerance_s,
    )


def load_datasets(cfg: TrainConfig) -> tuple[ManifestDataset, ManifestDataset, Mixture | None]:
    """load_data, and with data.mixture the Mixture its concatenated train dataset is drawn by."""
    mixture = None
    if cfg.data.mixture.sources is not None:
        train, mixture = load_mixture(
            resolve_sources(cfg.data.mixture, cfg.stage.name),
            cfg.stage.name,
            cfg.data.mixture.temperature,
            cfg.data.prompt_seed,
            cfg.data.duration_tolerance_s,
        )
    else:
        train = _load_manifest(cfg, "train_manifest")
    augment = getattr(cfg.stage, "augment", None)  # pretrain and SFT; training data only
    if augment is not None and augment.enabled:
        train = train.augmented(augment, cfg.trainer.seed)
    datasets = [train, _load_manifest(cfg, "dev_manifest")]
    validate_data(cfg, datasets[0].records, datasets[1].records)  # config against data
    if cfg.init_from is None and isinstance(cfg.model, TinyModelConfig) and not cfg.model.tokenizer_corpus:
        # The tiny tokenizer trains on every stage's train manifest: check the other stages' too, so a
        # broken line there is named here rather than failing inside tokenizer training.
        for path in train_manifests(cfg.data.dir):
            read_manifest_records(path, Path(path).parent.name, check_files=False)
    return datasets[0], datasets[1], mixture


def _fingerprint_of(cfg: TrainConfig, examples: int, mixture: Mixture | None) -> Callable[[], dict[str, Any]]:
    """What a resume must find unchanged: the train manifest, or every source of the mixture."""
    if mixture is not None:
        return lambda: mixture_fingerprint(mixture.manifests())
    return lambda: data_fingerprint(manifest_path(cfg, "train_manifest"), examples)


def prepare_universal(checkpoint: str | None, world: int) -> bool:
    """A checkpoint saved on another number of ranks is converted (once, by rank 0) to DeepSpeed's
    universal format, which the engine must be told about before it is built."""
    if checkpoint is None or not needs_universal(Path(checkpoint), world):
        return False
    if is_main():
        print(f"lalm: {checkpoint} was saved on other ranks: converting it to a universal checkpoint")
        to_universal(Path(checkpoint))
    barrier()
    return True


@dataclass
class Claim:
    """What rank 0 decided about the run folder, as every rank sees it."""

    plan: ResumePlan
    start_step: int
    fingerprint: dict[str, Any]
    lock: RunLock | None = None  # rank 0's; released when the run ends (or at exit)


def claim_run_folder(
    run_dir: Path, resume: str, config: dict[str, Any], fingerprint_of: Callable[[], dict[str, Any]]
) -> Claim:
    """Rank 0 locks run_dir, decides whether to resume and tidies the logs; every rank gets the plan,
    the resume step and the train data's fingerprint (`fingerprint_of()`, computed on rank 0), or
    the same error."""
    outcome: dict[str, Any] = {}
    lock = None
    if is_main():
        try:
            lock = RunLock(run_dir)
            lock.acquire()
            atexit.register(lock.release)
            fingerprint = fingerprint_of()
            plan = plan_resume(run_dir, resume, config, fingerprint)
            step = read_state(Path(plan.checkpoint))["train_state"]["step"] if plan.checkpoint else 0
            prepare_logs(run_dir, step)
            notes = [lock.note] if lock.note else []
            plan = ResumePlan(plan.checkpoint, notes + plan.notes)
            outcome = {"plan": plan, "step": step, "fingerprint": fingerprint}
        except RunFolderError as err:
            outcome = {"error": str(err), "locked": "in use by another job" in str(err)}
        except CheckpointError as err:
            outcome = {"error": str(err), "locked": False}
    outcome = from_main(outcome if is_main() else None)
    if "error" in outcome:
        raise TrainingExit(EXIT_LOCKED if outcome["locked"] else EXIT_CONFIG, outcome["error"])
    if is_main():
        for note in outcome["plan"].notes:
            print(f"lalm: {note}", flush=True)
    return Claim(outcome["plan"], outcome["step"], outcome["fingerprint"], lock)


def resolve_workers(setting: int) -> int:
    """data.num_workers, with -1 resolved to the spare cores of this rank's share of the machine."""
    if setting >= 0:
        return setting
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    per_rank = cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, min(4, per_rank - 1))


def uses_packing(setting: str, model: Any) -> bool:
    """data.packing: always | never | auto (when the LLM's attention is flash-attention's, whose
    varlen kernels make a packed row cost only its real tokens)."""
    if setting != "auto":
        return setting == "always"
    return str(model.config.get_text_config()._attn_implementation).startswith("flash_attention")


def _cache_reference(
    cfg: TrainConfig, stage: DpoStage, engine: Any, datasets: dict[str, Any], collator: Any, run_dir: Path
) -> tuple[Any, Any]:
    """The DPO datasets with cached reference log-probs; the reference engine is released after."""
    try:
        wrapped = prepare_cache(stage, engine, datasets, collator, cache_run(cfg, run_dir, engine.device))
    except StaleReferenceCache as err:
        raise TrainingExit(EXIT_CONFIG, str(err)) from err
    stage.release_reference()
    return wrapped["train"], wrapped["dev"]


@contextmanager
def sharded_loading(cfg: TrainConfig, accumulation: int) -> Iterator[None]:
    """Under ZeRO-3 (with deepspeed.zero_init), transformers' from_pretrained builds the model inside
    deepspeed.zero.Init and loads each rank's shard only: the trained model of init_from or
    model.builder=pretrained, and the DPO reference. The tiny builder (a few MB) and from_components
    (which copies two checkpoints into a new model) build on the host as before."""
    if cfg.deepspeed.zero_stage != 3 or not cfg.deepspeed.zero_init:
        yield
        return
    # transformers finds this object through a module-level weak reference while it is alive.
    handle = HfDeepSpeedConfig(deepspeed_config(cfg.deepspeed, cfg.trainer, cfg.optim, accumulation))
    try:
        yield
    finally:
        unset_hf_deepspeed_config()
        del handle


def build_trainer(cfg: TrainConfig) -> Trainer:
    world = world_size()  # from torchrun's environment; the group is joined after validation
    validate(cfg, world)  # all config mistakes, before any model is allocated
    train, dev, mixture = load_datasets(cfg)
    init_distributed(cfg.trainer.collective_timeout_s)
    run_dir = Path(cfg.output_dir) / cfg.stage.name
    config = json.loads(json.dumps(asdict(cfg), default=str))
    claim = claim_run_folder(run_dir, cfg.resume, config, _fingerprint_of(cfg, len(train), mixture))
    seed_everything(cfg.trainer.seed)
    accumulation = accumulation_steps(cfg.trainer, world)
    host_before = psutil.Process().memory_info().rss
    with sharded_loading(cfg, accumulation):
        base_model, processor = build_model(model_config(cfg))
        special = tuple(processor.tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)))
        stage, reference = build_stage(cfg, special)
    if is_main():
        grown = (psutil.Process().memory_info().rss - host_before) / 2**20
        size = sum(p.numel() * p.element_size() for p in base_model.parameters()) / 2**20
        print(
            f"lalm: model built: {size:.0f} MiB of weights, host memory of rank 0 +{grown:.0f} MiB",
            flush=True,
        )
    enable_activation_checkpointing(base_model, cfg.trainer.activation_checkpointing)
    head = build_ctc_head(base_model, cfg.trainer.seed) if getattr(cfg.stage, "ctc_weight", 0.0) > 0 else None
    model = prepare_trainable(AudioLanguageModel(base_model, head), cfg.stage)
    universal = prepare_universal(claim.plan.checkpoint, world)
    extra = universal_checkpoint_config() if universal else None
    flops = step_flops(model, isinstance(stage, DpoStage))
    engine = initialize_engine(model, cfg.deepspeed, cfg.trainer, cfg.optim, accumulation, extra)
    if reference is not None:
        reference = AudioLanguageModel(reference)
        stage.reference = initialize_reference(reference, cfg.deepspeed, cfg.trainer)  # type: ignore[attr-defined]
    collator = build_collator(cfg.stage.name, processor, collator_config(cfg, base_model))
    if isinstance(stage, DpoStage) and uses_reference_cache(
        cfg.stage.cache_reference, cfg.trainer, len(train), run_dir
    ):
        train, dev = _cache_reference(cfg, stage, engine, {"train": train, "dev": dev}, collator, run_dir)
    data = DataSources(
        train,
        dev,
        collator if mixture is None else mixture.counting(collator),  # + per-source counts
        cfg.trainer.seed,
        resolve_workers(cfg.data.num_workers),
        cfg.data.length_groups,
        cfg.data.max_bad_fraction,
        mixture,
    )
    if is_main():
        (run_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    logger = MetricsLogger(
        run_dir,
        cfg.trainer.max_steps,
        claim.start_step,
        cfg.trainer.wandb,
        config,
        is_main(),
        cfg.trainer.progress_bar,
    )
    trainer = Trainer(
        engine,
        stage,
        processor,
        data,
        cfg.trainer,
        accumulation,
        RunContext(run_dir, logger, config, claim.fingerprint, claim.lock),
        flops,
    )
    if claim.plan.checkpoint is not None:
        trainer.restore(Path(claim.plan.checkpoint), universal)
    return trainer
