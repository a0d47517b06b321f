"""Every file under configs/ composes against its typed schema; typos and wrong types fail at once."""

from __future__ import annotations

from operator import attrgetter
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from lalm.config.data import CorpusRecipeConfig, SyntheticRecipeConfig
from lalm.config.eval import ChatConfig, EvalConfig, GenerateConfig
from lalm.config.model import FromComponentsConfig, PretrainedModelConfig, TinyModelConfig
from lalm.config.store import PrepareDataConfig, register_configs
from lalm.config.train import (
    DataConfig,
    DeepSpeedConfig,
    DpoStageConfig,
    LrScaleConfig,
    OptimConfig,
    PretrainStageConfig,
    SftStageConfig,
    TrainConfig,
    TrainerConfig,
)

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
# Group files: the schema of their node and some values the file sets (checked after composition).
SCHEMAS = {
    "stage/pretrain": (PretrainStageConfig, {"name": "pretrain", "train_encoder": True}),
    "stage/sft": (SftStageConfig, {"name": "sft", "chat_weight": 0.5}),
    "stage/dpo": (DpoStageConfig, {"name": "dpo", "loss": "sigmoid", "beta": 0.1, "train_encoder": False}),
    "data/synthetic": (DataConfig, {"dir": "data/synthetic", "max_length": 1024}),
    "data/report_pretrain_mix": (
        DataConfig,
        {"root": "data/recipes", "dir": "data/recipes/librispeech", "mixture.temperature": 1.0},
    ),
    "data/report_sft_mix": (DataConfig, {"root": "data/recipes", "mixture.temperature": 2.0}),
    "optim/adamw": (
        OptimConfig,
        {"lr": 1e-4, "betas": [0.9, 0.98], "schedule": "cosine", "lr_scale": LrScaleConfig()},
    ),
    "deepspeed/zero0": (DeepSpeedConfig, {"zero_stage": 0, "offload_optimizer": False}),
    "deepspeed/zero2": (DeepSpeedConfig, {"zero_stage": 2, "offload_optimizer": False}),
    "deepspeed/zero3": (DeepSpeedConfig, {"zero_stage": 3, "offload_optimizer": False}),
    "deepspeed/zero3_offload": (DeepSpeedConfig, {"zero_stage": 3, "offload_optimizer": True}),
    "trainer/default": (TrainerConfig, {"max_steps": 100, "global_batch_size": 8}),
    "trainer/smoke": (TrainerConfig, {"max_steps": 3, "micro_batch_size": 2, "global_batch_size": 4}),
    "model/tiny": (TinyModelConfig, {"builder": "tiny", "encoder_layers": 3, "llm_layers": 3}),
    "model/from_components": (FromComponentsConfig, {"whisper_dir": "/w", "llm_dir": "/l"}),
    "model/pretrained": (PretrainedModelConfig, {"path": "/p"}),
    "model/qwen2_audio_1p5b_shape": (TinyModelConfig, {"llm_layers": 28, "embedding_rows": 151936}),
    "model/qwen2_audio_7b_shape": (TinyModelConfig, {"llm_hidden_size": 4096, "embedding_rows": 156032}),
    "recipe/synthetic": (SyntheticRecipeConfig, {"name": "synthetic", "size": 1.0}),
}
# The public-corpus recipes share one schema and read the top-level source_dir.
CORPORA = ("airbench", "aishell1", "clotho", "commonvoice", "covost2", "esc50", "fleurs", "librispeech")
CORPORA += ("meld", "vocalsound")
SCHEMAS |= {f"recipe/{c}": (CorpusRecipeConfig, {"name": c, "source_dir": "/s"}) for c in CORPORA}
# Experiments (@package _global_) only compose on top of train.yaml: values they set, by dotted path.
EXPERIMENTS = {
    "experiment/synthetic_tiny": {
        "experiment": "synthetic_tiny",
        "optim.lr": 1.5e-3,
        "optim.warmup_steps": 20,
        "trainer.micro_batch_size": 8,
        "trainer.global_batch_size": 16,
        "data.dir": "data/synthetic",
    },
}
PRIMARY = {"train": TrainConfig, "prepare_data": PrepareDataConfig, "evaluate": EvalConfig}
PRIMARY |= {"chat": ChatConfig, "generate": GenerateConfig}
# The field each primary config is checked by after composition (set to /tmp/x by REQUIRED).
CHECKED_FIELD = {"chat": "checkpoint", "generate": "output"}
PRIMARY_OF_GROUP = {"recipe": "prepare_data"}  # every other group belongs to train.yaml
# Values for required (???) fields so that the config can be turned into its dataclass.
REQUIRED = {
    "model/from_components": ["model.whisper_dir=/w", "model.llm_dir=/l"],
    "model/pretrained": ["model.path=/p"],
    "prepare_data": ["output_dir=/tmp/x"],
    "evaluate": ["output_dir=/tmp/x", "checkpoint=/c", "manifests=[/m.jsonl]"],
    "train": ["output_dir=/tmp/x"],
    "chat": ["checkpoint=/tmp/x"],
    "generate": ["checkpoint=/c", "manifest=/m.jsonl", "output=/tmp/x"],
}
REQUIRED |= {f"recipe/{c}": ["++source_dir=/s"] for c in CORPORA}


def _all_config_names() -> list[str]:
    return sorted(str(p.relative_to(CONFIGS).with_suffix("")) for p in CONFIGS.rglob("*.yaml"))


def _assert_values(node: object, values: dict[str, object]) -> None:
    for path, expected in values.items():
        assert attrgetter(path)(node) == expected, path


@pytest.fixture(autouse=True)
def _hydra():
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        yield


def test_every_config_file_is_covered():
    # A new yaml needs an entry in SCHEMAS, EXPERIMENTS or PRIMARY (and so a composition test).
    assert set(_all_config_names()) == set(SCHEMAS) | set(EXPERIMENTS) | set(PRIMARY)


@pytest.mark.parametrize("name", sorted(SCHEMAS) + sorted(PRIMARY))
def test_config_composes_to_its_schema(name):
    cfg = compose(config_name=name, overrides=REQUIRED.get(name, []))
    obj = OmegaConf.to_object(cfg)
    if name in SCHEMAS:  # a group file composes under its group's key
        schema, values = SCHEMAS[name]
        node = obj[name.split("/")[0]]
        assert isinstance(node, schema)
        _assert_values(node, values)
    else:
        assert isinstance(obj, PRIMARY[name])
        assert getattr(obj, CHECKED_FIELD.get(name, "output_dir")) == "/tmp/x"


def test_train_defaults():
    obj = OmegaConf.to_object(compose(config_name="train", overrides=REQUIRED["train"]))
    assert isinstance(obj.stage, PretrainStageConfig)
    assert isinstance(obj.model, TinyModelConfig)
    assert obj.deepspeed.zero_stage == 2 and obj.trainer.max_steps == 100
    assert obj.experiment is None and obj.init_from is None
    prepare = OmegaConf.to_object(compose(config_name="prepare_data", overrides=REQUIRED["prepare_data"]))
    assert isinstance(prepare.recipe, SyntheticRecipeConfig)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_group_option_composes_in_its_primary_config(name):
    group, option = name.split("/")
    primary = PRIMARY_OF_GROUP.get(group, "train")
    overrides = [f"{group}={option}", *REQUIRED[primary], *REQUIRED.get(name, [])]
    obj = OmegaConf.to_object(compose(config_name=primary, overrides=overrides))
    assert isinstance(obj, PRIMARY[primary])
    schema, values = SCHEMAS[name]
    node = getattr(obj, group)
    assert type(node) is schema
    _assert_values(node, values)


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_experiment_composes_on_train(name):
    # `experiment=` (not `+experiment=`): train.yaml lists `optional experiment: null` in its defaults.
    overrides = [f"experiment={name.split('/')[1]}", *REQUIRED["train"]]
    obj = OmegaConf.to_object(compose(config_name="train", overrides=overrides))
    assert isinstance(obj, TrainConfig) and isinstance(obj.model, TinyModelConfig)
    _assert_values(obj, EXPERIMENTS[name])
    # The command line still wins over the experiment.
    tuned = compose(config_name="train", overrides=[*overrides, "optim.lr=0.5", "stage=sft"])
    obj = OmegaConf.to_object(tuned)
    assert obj.optim.lr == 0.5 and isinstance(obj.stage, SftStageConfig)


def test_unknown_group_option_fails():
    with pytest.raises(ConfigCompositionException) as err:
        compose(config_name="train", overrides=["stage=foo", *REQUIRED["train"]])
    assert "stage/foo" in str(err.value)


def test_typo_in_train_config_fails():
    with pytest.raises(ConfigCompositionException) as err:
        compose(config_name="train", overrides=["trainer.max_stepz=3", *REQUIRED["train"]])
    assert "max_stepz" in str(err.value)
    with pytest.raises(ConfigCompositionException) as err:
        compose(config_name="train", overrides=["trainer.max_steps=three", *REQUIRED["train"]])
    assert isinstance(err.value.__cause__, ValidationError) or "max_steps" in str(err.value)


def test_field_of_another_stage_fails():
    # beta is a DPO setting: the pretrain stage's schema has no such key.
    with pytest.raises(ConfigCompositionException) as err:
        compose(config_name="train", overrides=["stage.beta=0.2", *REQUIRED["train"]])
    assert "beta" in str(err.value)
    dpo = compose(config_name="train", overrides=["stage=dpo", "stage.beta=0.2", *REQUIRED["train"]])
    assert OmegaConf.to_object(dpo).stage.beta == 0.2


def test_per_part_learning_rates_and_robust_dpo_from_the_command_line():
    overrides = ["optim.lr_scale.encoder=0.1", "stage=dpo", "stage.loss=robust", "stage.label_smoothing=0.1"]
    obj = OmegaConf.to_object(compose(config_name="train", overrides=[*overrides, *REQUIRED["train"]]))
    assert obj.optim.lr_scale == LrScaleConfig(encoder=0.1, projector=1.0, llm=1.0)
    assert isinstance(obj.optim.lr_scale, LrScaleConfig)
    assert (obj.stage.loss, obj.stage.label_smoothing) == ("robust", 0.1)
    with pytest.raises(ConfigCompositionException) as err:
        compose(config_name="train", overrides=["optim.lr_scale.audio=0.1", *REQUIRED["train"]])
    assert "audio" in str(err.value)


def test_unknown_key_and_wrong_type_fail():
    with pytest.raises(ConfigCompositionException) as err:
        compose(config_name="model/tiny", overrides=["model.encoder_layerz=2"])
    assert isinstance(err.value.__cause__, ConfigKeyError) or "encoder_layerz" in str(err.value)
    with pytest.raises(ConfigCompositionException) as err:
        compose(config_name="model/tiny", overrides=["model.encoder_layers=three"])
    assert isinstance(err.value.__cause__, ValidationError) or "encoder_layers" in str(err.value)
