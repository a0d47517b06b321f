"""Every file under configs/ composes against its typed schema; typos and wrong types fail at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from lalm.config.data import SyntheticRecipeConfig
from lalm.config.model import FromComponentsConfig, PretrainedModelConfig, TinyModelConfig
from lalm.config.store import register_configs

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
SCHEMAS = {
    "model/tiny": TinyModelConfig,
    "model/from_components": FromComponentsConfig,
    "model/pretrained": PretrainedModelConfig,
    "recipe/synthetic": SyntheticRecipeConfig,
}
# Values for required (???) fields so that the config can be turned into its dataclass.
REQUIRED = {
    "model/from_components": ["model.whisper_dir=/w", "model.llm_dir=/l"],
    "model/pretrained": ["model.path=/p"],
    "prepare_data": ["output_dir=/tmp/x"],
}


def _all_config_names() -> list[str]:
    return sorted(str(p.relative_to(CONFIGS).with_suffix("")) for p in CONFIGS.rglob("*.yaml"))


@pytest.fixture(autouse=True)
def _hydra():
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        yield


def test_every_config_file_is_covered():
    assert set(_all_config_names()) == set(SCHEMAS) | {"prepare_data"}


@pytest.mark.parametrize("name", _all_config_names())
def test_config_composes_to_its_schema(name):
    cfg = compose(config_name=name, overrides=REQUIRED.get(name, []))
    obj = OmegaConf.to_object(cfg)
    if name in SCHEMAS:  # a group file composes under its group's key
        assert isinstance(obj[name.split("/")[0]], SCHEMAS[name])
    else:
        assert isinstance(obj.recipe, SyntheticRecipeConfig) and obj.output_dir == "/tmp/x"


def test_unknown_key_and_wrong_type_fail():
    with pytest.raises(ConfigCompositionException) as err:
        compose(config_name="model/tiny", overrides=["model.encoder_layerz=2"])
    assert isinstance(err.value.__cause__, ConfigKeyError) or "encoder_layerz" in str(err.value)
    with pytest.raises(ConfigCompositionException) as err:
        compose(config_name="model/tiny", overrides=["model.encoder_layers=three"])
    assert isinstance(err.value.__cause__, ValidationError) or "encoder_layers" in str(err.value)
