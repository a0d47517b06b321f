"""Registers lalm's structured configs with Hydra, so a typo or a wrong type fails at composition."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from lalm.config.data import SyntheticRecipeConfig
from lalm.config.model import FromComponentsConfig, PretrainedModelConfig, TinyModelConfig


@dataclass
class PrepareDataConfig:
    recipe: SyntheticRecipeConfig = MISSING
    output_dir: str = MISSING


def register_configs() -> None:
    store = ConfigStore.instance()
    store.store(name="prepare_data_schema", node=PrepareDataConfig)
    store.store(group="recipe", name="synthetic_schema", node=SyntheticRecipeConfig)
    store.store(group="model", name="tiny_schema", node=TinyModelConfig)
    store.store(group="model", name="from_components_schema", node=FromComponentsConfig)
    store.store(group="model", name="pretrained_schema", node=PretrainedModelConfig)
