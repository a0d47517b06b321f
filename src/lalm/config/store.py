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
    OptimConfig,
    TrainConfig,
    TrainerConfig,
)
from lalm.stages.registry import get_stage, stage_names


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
    for stage in stage_names():  # configs/stage/<stage>.yaml starts from <stage>_stage_schema
        store.store(group="stage", name=f"{stage}_stage_schema", node=get_stage(stage).config)
    store.store(group="data", name="data_schema", node=DataConfig)
    store.store(group="optim", name="optim_schema", node=OptimConfig)
    store.store(group="deepspeed", name="deepspeed_schema", node=DeepSpeedConfig)
    store.store(group="trainer", name="trainer_schema", node=TrainerConfig)
