"""From a validated TrainConfig to a ready Trainer: model(s), engine(s), stage, data, logger."""

from __future__ import annotations

import json
import random
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lalm.config.model import PretrainedModelConfig, TinyModelConfig
from lalm.config.train import STAGE_NAMES, TrainConfig, accumulation_steps, manifest_path, validate
from lalm.data.dataset import ManifestDataset
from lalm.models.builders import build_model
from lalm.models.tokenizer import SPECIAL_TOKENS
from lalm.stages.base import Stage
from lalm.stages.ctc import attach_ctc_head
from lalm.stages.dpo import DpoStage
from lalm.stages.lm import LanguageModelingStage
from lalm.training.distributed import init_distributed, is_main, world_size
from lalm.training.engine import initialize_engine, initialize_reference
from lalm.training.logging import MetricsLogger
from lalm.training.params import prepare_trainable
from lalm.training.trainer import DataSources, Trainer


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


def build_trainer(cfg: TrainConfig) -> Trainer:
    world = world_size()  # from torchrun's environment; the group is joined after validation
    validate(cfg, world)  # all config mistakes, before any model is allocated
    init_distributed()
    seed_everything(cfg.trainer.seed)
    run_dir = Path(cfg.output_dir) / cfg.stage.name
    base_model, processor = build_model(model_config(cfg))
    special = tuple(processor.tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)))
    stage, reference = build_stage(cfg, special)
    if getattr(cfg.stage, "ctc_weight", 0.0) > 0:
        attach_ctc_head(base_model, cfg.trainer.seed)
    model = prepare_trainable(base_model, cfg.stage)
    accumulation = accumulation_steps(cfg.trainer, world)
    engine = initialize_engine(model, cfg.deepspeed, cfg.trainer, cfg.optim, accumulation)
    if reference is not None:
        stage.reference = initialize_reference(reference, cfg.deepspeed, cfg.trainer)  # type: ignore[attr-defined]
    train = ManifestDataset.from_manifest(
        manifest_path(cfg, "train_manifest"), cfg.stage.name, cfg.data.prompt_seed
    )
    dev = ManifestDataset.from_manifest(
        manifest_path(cfg, "dev_manifest"), cfg.stage.name, cfg.data.prompt_seed
    )
    data = DataSources(
        train,
        dev,
        stage.collator(processor, cfg.data.max_length),
        cfg.trainer.seed,
        cfg.data.num_workers,
        cfg.data.length_groups,
    )
    if is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2, default=str) + "\n")
    logger = MetricsLogger(
        run_dir, cfg.trainer.max_steps, 0, cfg.trainer.wandb, asdict(cfg), is_main(), cfg.trainer.progress_bar
    )
    return Trainer(engine, stage, processor, data, cfg.trainer, accumulation, run_dir, logger)
