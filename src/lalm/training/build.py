"""From a validated TrainConfig to a ready Trainer: model(s), engine(s), stage, data, logger."""

from __future__ import annotations

import atexit
import json
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lalm.config.data_checks import validate_data
from lalm.config.model import PretrainedModelConfig, TinyModelConfig
from lalm.config.train import STAGE_NAMES, TrainConfig, accumulation_steps, manifest_path
from lalm.config.validation import validate
from lalm.data.dataset import ManifestDataset
from lalm.data.manifest import read_manifest_records
from lalm.models.builders import build_model
from lalm.models.tokenizer import SPECIAL_TOKENS
from lalm.stages.base import Stage
from lalm.stages.ctc import attach_ctc_head
from lalm.stages.dpo import DpoStage
from lalm.stages.lm import LanguageModelingStage
from lalm.training.checkpoint import CheckpointError, read_state
from lalm.training.distributed import barrier, from_main, init_distributed, is_main, world_size
from lalm.training.engine import initialize_engine, initialize_reference
from lalm.training.exits import EXIT_CONFIG, EXIT_LOCKED, TrainingExit
from lalm.training.logging import MetricsLogger
from lalm.training.params import prepare_trainable
from lalm.training.run_folder import (
    ResumePlan,
    RunFolderError,
    RunLock,
    data_fingerprint,
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
    paths = [Path(data_dir) / stage / "train.jsonl" for stage in STAGE_NAMES]
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
    """The stage plug-in, and for DPO without LoRA the frozen reference model (not yet wrapped)."""
    if cfg.stage.name == "dpo":
        assert cfg.init_from is not None  # validate() guarantees it
        reference = None
        if not cfg.stage.lora.enabled:
            reference = build_model(PretrainedModelConfig(path=cfg.init_from))[0]
        return DpoStage(cfg.stage, None), reference
    chat_weight = cfg.stage.chat_weight if cfg.stage.name == "sft" else None
    pretrain = cfg.stage.name == "pretrain"
    ctc_weight = cfg.stage.ctc_weight if pretrain else 0.0
    task_weights = dict(cfg.stage.task_weights)
    stage = LanguageModelingStage(cfg.stage.name, chat_weight, ctc_weight, special_ids, task_weights)
    return stage, None


def load_data(cfg: TrainConfig) -> tuple[ManifestDataset, ManifestDataset]:
    """Train and dev manifests, every line checked (all bad lines named at once), before anything
    is built: a data mistake costs seconds, not a model build."""
    datasets = [
        ManifestDataset.from_manifest(
            manifest_path(cfg, name),
            cfg.stage.name,
            cfg.data.prompt_seed,
            duration_tolerance_s=cfg.data.duration_tolerance_s,
        )
        for name in ("train_manifest", "dev_manifest")
    ]
    validate_data(cfg, datasets[0].records, datasets[1].records)  # config against data
    if cfg.init_from is None and isinstance(cfg.model, TinyModelConfig) and not cfg.model.tokenizer_corpus:
        # The tiny tokenizer trains on every stage's train manifest: check the other stages' too, so a
        # broken line there is named here rather than failing inside tokenizer training.
        for path in train_manifests(cfg.data.dir):
            read_manifest_records(path, Path(path).parent.name, check_files=False)
    return datasets[0], datasets[1]


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
    run_dir: Path, resume: str, config: dict[str, Any], train_manifest: str, examples: int
) -> Claim:
    """Rank 0 locks run_dir, decides whether to resume and tidies the logs; every rank gets the plan,
    the resume step and the train data's fingerprint, or the same error."""
    outcome: dict[str, Any] = {}
    lock = None
    if is_main():
        try:
            lock = RunLock(run_dir)
            lock.acquire()
            atexit.register(lock.release)
            fingerprint = data_fingerprint(train_manifest, examples)
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


def build_trainer(cfg: TrainConfig) -> Trainer:
    world = world_size()  # from torchrun's environment; the group is joined after validation
    validate(cfg, world)  # all config mistakes, before any model is allocated
    train, dev = load_data(cfg)
    init_distributed(cfg.trainer.collective_timeout_s)
    run_dir = Path(cfg.output_dir) / cfg.stage.name
    config = json.loads(json.dumps(asdict(cfg), default=str))
    claim = claim_run_folder(run_dir, cfg.resume, config, manifest_path(cfg, "train_manifest"), len(train))
    seed_everything(cfg.trainer.seed)
    base_model, processor = build_model(model_config(cfg))
    special = tuple(processor.tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)))
    stage, reference = build_stage(cfg, special)
    if getattr(cfg.stage, "ctc_weight", 0.0) > 0:
        attach_ctc_head(base_model, cfg.trainer.seed)
    model = prepare_trainable(base_model, cfg.stage)
    accumulation = accumulation_steps(cfg.trainer, world)
    universal = prepare_universal(claim.plan.checkpoint, world)
    extra = universal_checkpoint_config() if universal else None
    engine = initialize_engine(model, cfg.deepspeed, cfg.trainer, cfg.optim, accumulation, extra)
    if reference is not None:
        stage.reference = initialize_reference(reference, cfg.deepspeed, cfg.trainer)  # type: ignore[attr-defined]
    data = DataSources(
        train,
        dev,
        stage.collator(processor, cfg.data.max_length),
        cfg.trainer.seed,
        cfg.data.num_workers,
        cfg.data.length_groups,
        cfg.data.max_bad_fraction,
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
    )
    if claim.plan.checkpoint is not None:
        trainer.restore(Path(claim.plan.checkpoint), universal)
    return trainer
