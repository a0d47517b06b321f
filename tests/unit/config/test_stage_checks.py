"""Each stage's own checks (lalm.config.stage_checks), run by validate() through the registry, and the
mixture's refusal of a reference cache, which follows the stage's setting rather than its name."""

from __future__ import annotations

from pathlib import Path

import pytest

from lalm.config.mixture_checks import mixture_errors
from lalm.config.model import TinyModelConfig
from lalm.config.stage_checks import dpo_errors, pretrain_errors, sft_errors
from lalm.config.train import (
    DataConfig,
    DpoStageConfig,
    LoraConfig,
    MixtureConfig,
    MixtureSourceConfig,
    PretrainStageConfig,
    SftStageConfig,
    StageConfig,
    TrainConfig,
)
from lalm.config.validation import validate
from lalm.errors import ConfigError
from lalm.stages.registry import get_stage, load

LORA_REFERENCE = "DPO with LoRA uses the policy without adapters as its reference, so only adapters may train"


def _config(stage: StageConfig, data: DataConfig | None = None, init_from: str | None = None) -> TrainConfig:
    return TrainConfig(
        stage=stage,
        model=TinyModelConfig(),
        data=data or DataConfig(dir="/nowhere"),
        output_dir="/tmp/unused",
        init_from=init_from,
    )


def test_the_registry_names_these_checks() -> None:
    assert [load(get_stage(name).config_errors or "") for name in ("pretrain", "sft", "dpo")] == [
        pretrain_errors,
        sft_errors,
        dpo_errors,
    ]


def test_each_stage_checks_only_its_own_settings() -> None:
    assert pretrain_errors(_config(PretrainStageConfig(ctc_weight=-1.0))) == [
        "stage.ctc_weight must be >= 0, got -1.0"
    ]
    assert sft_errors(_config(SftStageConfig(task_weights={"lid": -1.0}, chat_weight=2.0))) == [
        "stage.task_weights must be >= 0, got {'lid': -1.0}",
        "stage.chat_weight must be in [0, 1], got 2.0",
    ]
    # sft's tasks are free labels; pretrain's must be registered tasks.
    assert sft_errors(_config(SftStageConfig(task_weights={"karaoke": 1.0}))) == []
    assert "unknown tasks ['karaoke']" in " ".join(
        pretrain_errors(_config(PretrainStageConfig(task_weights={"karaoke": 1.0})))
    )
    assert dpo_errors(_config(DpoStageConfig(), init_from="/somewhere")) == []


def test_dpo_with_lora_trains_only_adapters(tmp_path: Path) -> None:
    lora = LoraConfig(enabled=True)
    for frozen in ({"train_llm": False}, {"train_llm": False, "train_encoder": False}):
        stage = DpoStageConfig(lora=lora, **frozen)  # the projector trains by default
        errors = dpo_errors(_config(stage, init_from=str(tmp_path)))
        assert [e for e in errors if e.startswith(LORA_REFERENCE)] == [
            f"{LORA_REFERENCE}: set stage.train_encoder=false stage.train_projector=false"
        ]
    adapters = DpoStageConfig(lora=lora, train_llm=False, train_encoder=False, train_projector=False)
    assert dpo_errors(_config(adapters, init_from=str(tmp_path))) == []
    # validate() reports it, through the registry.
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=LORA_REFERENCE):
        validate(_config(DpoStageConfig(lora=lora, train_llm=False), init_from=str(tmp_path)), world_size=1)


def test_a_mixture_refuses_any_stages_reference_cache(tmp_path: Path) -> None:
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("")
    mixture = MixtureConfig(sources=[MixtureSourceConfig(path=str(manifest))])
    data = DataConfig(dir=str(tmp_path), mixture=mixture)
    cached = "stage=dpo with data.mixture: the reference cache is keyed by one train manifest"
    errors = mixture_errors(_config(DpoStageConfig(cache_reference="auto"), data))
    assert [e for e in errors if e.startswith(cached)] == [f"{cached}, set stage.cache_reference=never"]
    assert mixture_errors(_config(DpoStageConfig(cache_reference="never"), data)) == []
    assert mixture_errors(_config(SftStageConfig(), data)) == []  # no reference cache at all
