"""Registers lalm's structured configs with Hydra, so a typo or a wrong type fails at composition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from lalm.config.data import CorpusRecipeConfig, SyntheticRecipeConfig
from lalm.config.eval import ChatConfig, EvalConfig, GenerateConfig
from lalm.config.model import FromComponentsConfig, PretrainedModelConfig, TinyModelConfig
from lalm.config.train import (
    DataConfig,
    DeepSpeedConfig,
    DpoStageConfig,
    OptimConfig,
    PretrainStageConfig,
    SftStageConfig,
    TrainConfig,
    TrainerConfig,
)


@dataclass
class PrepareDataConfig:
    # Each recipe's own schema (synthetic_schema, corpus_schema) types its group option.
    recipe: Any = MISSING
    output_dir: str = MISSING
    # The corpus's folder, for the public-corpus recipes (their configs read ${source_dir}).
    source_dir: str | None = None


def register_configs() -> None:
    store = ConfigStore.instance()
    store.store(name="prepare_data_schema", node=PrepareDataConfig)
    store.store(group="recipe", name="synthetic_schema", node=SyntheticRecipeConfig)
    store.store(group="recipe", name="corpus_schema", node=CorpusRecipeConfig)
    store.store(group="model", name="tiny_schema", node=TinyModelConfig)
    store.store(group="model", name="from_components_schema", node=FromComponentsConfig)
    store.store(group="model", name="pretrained_schema", node=PretrainedModelConfig)
    store.store(name="train_schema", node=TrainConfig)
    store.store(name="evaluate_schema", node=EvalConfig)
    store.store(name="chat_schema", node=ChatConfig)
    store.store(name="generate_schema", node=GenerateConfig)
    store.store(group="stage", name="pretrain_stage_schema", node=PretrainStageConfig)
    store.store(group="stage", name="sft_stage_schema", node=SftStageConfig)
    store.store(group="stage", name="dpo_stage_schema", node=DpoStageConfig)
    store.store(group="data", name="data_schema", node=DataConfig)
    store.store(group="optim", name="optim_schema", node=OptimConfig)
    store.store(group="deepspeed", name="deepspeed_schema", node=DeepSpeedConfig)
    store.store(group="trainer", name="trainer_schema", node=TrainerConfig)
