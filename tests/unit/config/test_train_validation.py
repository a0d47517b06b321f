"""validate() finds every config mistake at once, before anything is allocated, and each message
says what to change; accumulation_steps and manifest_path by example."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lalm.config.model import TinyModelConfig
from lalm.config.train import (
    DataConfig,
    DeepSpeedConfig,
    DpoStageConfig,
    LoraConfig,
    OptimConfig,
    PretrainStageConfig,
    SftStageConfig,
    StageConfig,
    TrainConfig,
    TrainerConfig,
    accumulation_steps,
    manifest_path,
    validate,
)
from lalm.data.prompts import TASKS


def _config(corpus_dir: Path, stage: StageConfig | None = None, **fields: object) -> TrainConfig:
    """A valid single-rank config (global 8 = micro 4 x 1 rank x 2 steps) with some fields replaced."""
    base = {
        "stage": stage or PretrainStageConfig(),
        "model": TinyModelConfig(),
        "data": DataConfig(dir=str(corpus_dir)),
        "output_dir": "/tmp/unused",
    }
    return TrainConfig(**{**base, **fields})


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """What validate() accepts as init_from: a folder with a config.json."""
    (tmp_path / "config.json").write_text("{}")
    return tmp_path


def _errors(cfg: TrainConfig, world_size: int = 1) -> str:
    with pytest.raises(ValueError, match="invalid training config") as err:
        validate(cfg, world_size)
    return str(err.value)


# ---------------------------------------------------------------- valid configs


def test_valid_pretrain_config_passes(corpus_dir):
    validate(_config(corpus_dir), world_size=1)
    validate(_config(corpus_dir), world_size=2)  # global 8 = 4 x 2 ranks x 1


def test_valid_sft_and_dpo_configs_pass(corpus_dir, checkpoint):
    validate(_config(corpus_dir, SftStageConfig(), init_from=str(checkpoint)), world_size=1)
    validate(_config(corpus_dir, DpoStageConfig(), init_from=str(checkpoint)), world_size=1)
    lora = SftStageConfig(train_llm=False, lora=LoraConfig(enabled=True))
    validate(_config(corpus_dir, lora, deepspeed=DeepSpeedConfig(zero_stage=2)), world_size=1)


# ---------------------------------------------------------------- one mistake each


def test_dpo_needs_init_from(corpus_dir):
    message = _errors(_config(corpus_dir, DpoStageConfig()))
    assert "stage=dpo needs init_from=" in message


def test_init_from_must_be_a_checkpoint(corpus_dir, tmp_path):
    missing = tmp_path / "nowhere"
    message = _errors(_config(corpus_dir, SftStageConfig(), init_from=str(missing)))
    assert str(missing) in message and "config.json" in message
    (tmp_path / "empty").mkdir()
    message = _errors(_config(corpus_dir, SftStageConfig(), init_from=str(tmp_path / "empty")))
    assert "config.json" in message


def test_global_batch_must_divide_by_micro_times_ranks(corpus_dir):
    trainer = TrainerConfig(global_batch_size=10, micro_batch_size=4)
    message = _errors(_config(corpus_dir, trainer=trainer), world_size=2)
    assert "trainer.global_batch_size=10" in message
    assert "micro_batch_size (4) x ranks (2) = 8" in message
    with pytest.raises(ValueError, match="change one of them"):
        accumulation_steps(trainer, world_size=2)


@pytest.mark.parametrize(
    "global_batch, micro, world, expected",
    [(16, 2, 2, 4), (16, 4, 4, 1), (8, 1, 1, 8), (12, 3, 2, 2)],
)
def test_accumulation_steps(global_batch, micro, world, expected):
    trainer = TrainerConfig(global_batch_size=global_batch, micro_batch_size=micro)
    assert accumulation_steps(trainer, world) == expected


def test_unknown_stage_name(corpus_dir):
    message = _errors(_config(corpus_dir, StageConfig(name="rlhf")))
    assert "unknown stage 'rlhf'; choose one of ['pretrain', 'sft', 'dpo']" in message


@pytest.mark.parametrize(
    "stage, fragment",
    [
        (DpoStageConfig(loss="foo"), "stage.loss='foo': use sigmoid|ipo|hinge"),
        (DpoStageConfig(beta=0.0), "stage.beta must be > 0, got 0.0"),
        (DpoStageConfig(beta=-0.1), "stage.beta must be > 0, got -0.1"),
        (DpoStageConfig(label_smoothing=0.5), "stage.label_smoothing must be in [0, 0.5)"),
        (SftStageConfig(chat_weight=1.5), "stage.chat_weight must be in [0, 1], got 1.5"),
        (DpoStageConfig(rpo_alpha=-1.0), "stage.rpo_alpha must be >= 0, got -1.0"),
        (PretrainStageConfig(task_weights={"asr": -1.0}), "stage.task_weights must be >= 0"),
        (PretrainStageConfig(task_weights=dict.fromkeys(TASKS, 0.0)), "must leave some task in"),
        (SftStageConfig(task_weights={"lid": -2.0}), "stage.task_weights must be >= 0"),
        (PretrainStageConfig(task_weights={"asr": 2.0, "karaoke": 1.0}), "unknown tasks ['karaoke']"),
    ],
)
def test_stage_values(corpus_dir, checkpoint, stage, fragment):
    message = _errors(_config(corpus_dir, stage, init_from=str(checkpoint)))
    assert fragment in message
    assert message.count("\n  - ") == 1  # only this mistake


def test_sft_task_weights_may_name_any_label(corpus_dir, checkpoint):
    # SFT tasks are free labels of the manifest (checked when the stream is built), not the fixed set.
    cfg = _config(corpus_dir, SftStageConfig(task_weights={"emotion_qa": 2.0}), init_from=str(checkpoint))
    validate(cfg, 1)


def test_negative_length_groups(corpus_dir):
    cfg = _config(corpus_dir, PretrainStageConfig())
    cfg.data.length_groups = -1
    assert "data.length_groups must be >= 0, got -1" in _errors(cfg)


def test_nothing_trainable(corpus_dir):
    stage = PretrainStageConfig(train_encoder=False, train_projector=False, train_llm=False)
    message = _errors(_config(corpus_dir, stage))
    assert "nothing to train: enable stage.train_encoder, train_projector, train_llm or lora" in message


def test_lora_under_zero3_is_refused(corpus_dir):
    stage = SftStageConfig(lora=LoraConfig(enabled=True))
    message = _errors(_config(corpus_dir, stage, deepspeed=DeepSpeedConfig(zero_stage=3)))
    assert "use deepspeed=zero2" in message


@pytest.mark.parametrize(
    "fields, fragment",
    [
        ({"deepspeed": DeepSpeedConfig(zero_stage=4)}, "deepspeed.zero_stage must be 0-3, got 4"),
        ({"optim": OptimConfig(schedule="linear")}, "optim.schedule='linear': cosine|constant"),
        ({"trainer": TrainerConfig(precision="fp16")}, "trainer.precision: auto|fp32|bf16"),
        ({"trainer": TrainerConfig(max_steps=0)}, "max_steps and micro_batch_size must be > 0"),
    ],
)
def test_engine_and_trainer_values(corpus_dir, fields, fragment):
    assert fragment in _errors(_config(corpus_dir, **fields))


def test_missing_manifests(corpus_dir, tmp_path):
    message = _errors(_config(corpus_dir, data=DataConfig(dir=str(tmp_path))))
    assert f"data.train_manifest {tmp_path / 'pretrain' / 'train.jsonl'} does not exist" in message
    assert f"data.dev_manifest {tmp_path / 'pretrain' / 'dev.jsonl'} does not exist" in message
    assert "set data.train_manifest" in message


def test_explicit_manifest_is_checked_too(corpus_dir, tmp_path):
    data = DataConfig(dir=str(corpus_dir), dev_manifest=str(tmp_path / "dev.jsonl"))
    message = _errors(_config(corpus_dir, data=data))
    assert f"data.dev_manifest {tmp_path / 'dev.jsonl'} does not exist" in message
    assert "data.train_manifest" not in message


def test_every_mistake_is_reported_in_one_error(corpus_dir, tmp_path):
    stage = DpoStageConfig(loss="foo", beta=0.0, train_encoder=False, train_projector=False, train_llm=False)
    cfg = _config(
        corpus_dir,
        stage,
        data=DataConfig(dir=str(tmp_path)),
        trainer=TrainerConfig(global_batch_size=10, micro_batch_size=4),
    )
    message = _errors(cfg, world_size=2)
    fragments = [
        "stage=dpo needs init_from=",
        "stage.loss='foo'",
        "stage.beta must be > 0",
        "nothing to train",
        "trainer.global_batch_size=10",
        "data.train_manifest",
        "data.dev_manifest",
    ]
    assert [f for f in fragments if f not in message] == []
    assert message.count("\n  - ") == len(fragments)


# ---------------------------------------------------------------- manifest_path


def test_manifest_path_defaults_to_the_stage_folder_and_honours_overrides(corpus_dir):
    sft = _config(corpus_dir, SftStageConfig())
    assert manifest_path(sft, "train_manifest") == str(corpus_dir / "sft" / "train.jsonl")
    assert manifest_path(sft, "dev_manifest") == str(corpus_dir / "sft" / "dev.jsonl")
    explicit = dataclasses.replace(sft, data=DataConfig(dir=str(corpus_dir), train_manifest="/x/t.jsonl"))
    assert manifest_path(explicit, "train_manifest") == "/x/t.jsonl"
    assert manifest_path(explicit, "dev_manifest") == str(corpus_dir / "sft" / "dev.jsonl")


# ---------------------------------------------------------------- known bugs (src/lalm/config/train.py)


def test_zero_micro_batch_is_reported_not_crashed(corpus_dir):
    message = _errors(_config(corpus_dir, trainer=TrainerConfig(micro_batch_size=0)))
    assert "max_steps and micro_batch_size must be > 0" in message


def test_zero_global_batch_is_refused(corpus_dir):
    message = _errors(_config(corpus_dir, trainer=TrainerConfig(global_batch_size=0)))
    assert "global_batch_size" in message


def test_stage_name_without_its_schema_is_reported(corpus_dir, checkpoint):
    stage = PretrainStageConfig(name="dpo")  # what Hydra composes for `stage.name=dpo`
    message = _errors(_config(corpus_dir, stage, init_from=str(checkpoint)))
    assert "stage=dpo" in message


def test_dpo_lora_must_train_adapters_only(corpus_dir, tmp_path):
    from lalm.config.train import DpoStageConfig, LoraConfig

    checkpoint = tmp_path / "sft"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    cfg = TrainConfig(
        stage=DpoStageConfig(lora=LoraConfig(enabled=True)),
        model=TinyModelConfig(),
        data=DataConfig(dir=str(corpus_dir)),
        output_dir=str(tmp_path),
        init_from=str(checkpoint),
    )
    with pytest.raises(ValueError, match="only adapters may train"):
        validate(cfg, 1)
    cfg.stage.train_projector = cfg.stage.train_encoder = False
    validate(cfg, 1)


def test_log_every_must_be_positive(corpus_dir, tmp_path):
    from lalm.config.train import PretrainStageConfig, TrainerConfig

    cfg = TrainConfig(
        stage=PretrainStageConfig(),
        model=TinyModelConfig(),
        data=DataConfig(dir=str(corpus_dir)),
        output_dir=str(tmp_path),
        trainer=TrainerConfig(log_every=0),
    )
    with pytest.raises(ValueError, match="log_every must be >= 1"):
        validate(cfg, 1)
