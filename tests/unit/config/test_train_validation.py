"""validate() finds every config mistake at once, before anything is allocated, and each message
says what to change; validate_data() the config's mistakes against the manifests; accumulation_steps
and manifest_path by example."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from lalm.config.checks import unknown_fields
from lalm.config.data_checks import example_bounds, validate_data
from lalm.config.model import FromComponentsConfig, PretrainedModelConfig, TinyModelConfig
from lalm.config.train import (
    DPO_LOSSES,
    DataConfig,
    DeepSpeedConfig,
    DpoStageConfig,
    LoraConfig,
    LrScaleConfig,
    OptimConfig,
    PretrainStageConfig,
    SftStageConfig,
    StageConfig,
    TrainConfig,
    TrainerConfig,
    accumulation_steps,
    manifest_path,
)
from lalm.config.validation import validate
from lalm.data.collators import CollatorConfig, ConversationCollator, PreferenceCollator
from lalm.data.dataset import ManifestDataset
from lalm.data.manifest import load_manifest
from lalm.data.tasks import task_names
from lalm.errors import ConfigError
from lalm.losses.preference import PREFERENCE_LOSSES


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
    robust = DpoStageConfig(loss="robust", label_smoothing=0.1)
    validate(_config(corpus_dir, robust, init_from=str(checkpoint)), world_size=1)
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
        (DpoStageConfig(loss="foo"), "stage.loss='foo': use sigmoid|ipo|hinge|robust"),
        (DpoStageConfig(beta=0.0), "stage.beta must be > 0, got 0.0"),
        (DpoStageConfig(beta=-0.1), "stage.beta must be > 0, got -0.1"),
        (DpoStageConfig(label_smoothing=0.5), "stage.label_smoothing must be in [0, 0.5)"),
        # robust with the default label_smoothing=0 is plain DPO: refused, naming the fix.
        (
            DpoStageConfig(loss="robust"),
            "stage.loss=robust needs stage.label_smoothing in (0, 0.5), the share of preference labels "
            "assumed flipped (e.g. 0.1), got 0.0; with 0 it is stage.loss=sigmoid",
        ),
        (
            DpoStageConfig(loss="robust", label_smoothing=0.5),
            "stage.loss=robust needs stage.label_smoothing in (0, 0.5)",
        ),
        (SftStageConfig(chat_weight=1.5), "stage.chat_weight must be in [0, 1], got 1.5"),
        (DpoStageConfig(rpo_alpha=-1.0), "stage.rpo_alpha must be >= 0, got -1.0"),
        (PretrainStageConfig(task_weights={"asr": -1.0}), "stage.task_weights must be >= 0"),
        (PretrainStageConfig(task_weights=dict.fromkeys(task_names(), 0.0)), "must leave some task in"),
        (SftStageConfig(task_weights={"lid": -2.0}), "stage.task_weights must be >= 0"),
        (PretrainStageConfig(task_weights={"asr": 2.0, "karaoke": 1.0}), "unknown tasks ['karaoke']"),
    ],
)
def test_stage_values(corpus_dir, checkpoint, stage, fragment):
    message = _errors(_config(corpus_dir, stage, init_from=str(checkpoint)))
    assert fragment in message
    assert message.count("\n  - ") == 1  # only this mistake


def test_dpo_loss_names_are_the_registered_losses():
    assert set(DPO_LOSSES) == set(PREFERENCE_LOSSES)


@pytest.mark.parametrize(
    "stage, lr_scale, fragment",
    [
        (
            PretrainStageConfig(),
            LrScaleConfig(encoder=-0.1),
            "optim.lr_scale.encoder must be a finite number >= 0, got -0.1",
        ),
        (
            PretrainStageConfig(),
            LrScaleConfig(llm=float("nan")),
            "optim.lr_scale.llm must be a finite number",
        ),
        (
            PretrainStageConfig(),
            LrScaleConfig(encoder=0.0),
            "optim.lr_scale.encoder=0 trains the encoder at learning rate 0: to freeze it set "
            "stage.train_encoder=false, or give it a scale > 0",
        ),
        (SftStageConfig(), LrScaleConfig(projector=0.0), "set stage.train_projector=false"),
        (
            SftStageConfig(train_llm=False, lora=LoraConfig(enabled=True)),  # the adapters are the LLM's
            LrScaleConfig(llm=0.0),
            "optim.lr_scale.llm=0 trains the llm at learning rate 0: to freeze it set stage.train_llm=false "
            "stage.lora.enabled=false",
        ),
    ],
)
def test_lr_scale_values(corpus_dir, checkpoint, stage, lr_scale, fragment):
    cfg = _config(corpus_dir, stage, init_from=str(checkpoint), optim=OptimConfig(lr_scale=lr_scale))
    message = _errors(cfg)
    assert fragment in message
    assert message.count("\n  - ") == 1  # only this mistake


def test_lr_scale_0_is_fine_for_a_frozen_part(corpus_dir, checkpoint):
    frozen_encoder = SftStageConfig(train_encoder=False)
    optim = OptimConfig(lr_scale=LrScaleConfig(encoder=0.0, projector=10.0, llm=0.5))
    validate(_config(corpus_dir, frozen_encoder, init_from=str(checkpoint), optim=optim), world_size=1)
    projector_only = PretrainStageConfig(train_encoder=False, train_llm=False)
    optim = OptimConfig(lr_scale=LrScaleConfig(encoder=0.0, llm=0.0))
    validate(_config(corpus_dir, projector_only, optim=optim), world_size=1)


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


def test_lora_under_zero3_is_accepted(corpus_dir):
    stage = SftStageConfig(train_llm=False, lora=LoraConfig(enabled=True))
    validate(_config(corpus_dir, stage, deepspeed=DeepSpeedConfig(zero_stage=3)), world_size=1)


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


# ---------------------------------------------------------------- known bugs (src/lalm/config/validation.py)


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


# ---------------------------------------------------------------- values that cannot work (one each)


@pytest.mark.parametrize(
    "fields, fragment",
    [
        ({"optim": OptimConfig(warmup_steps=100)}, "optim.warmup_steps=100 must be < trainer.max_steps=100"),
        ({"optim": OptimConfig(warmup_steps=-1)}, "optim.warmup_steps must be >= 0, got -1"),
        (
            {"optim": OptimConfig(max_grad_norm=-1.0)},
            "optim.max_grad_norm must be >= 0 (0: no clipping), got -1.0",
        ),
        ({"optim": OptimConfig(lr=0.0)}, "optim.lr must be a finite number > 0, got 0.0"),
        ({"optim": OptimConfig(lr=float("inf"))}, "optim.lr must be a finite number > 0, got inf"),
        ({"optim": OptimConfig(betas=[0.9])}, "optim.betas must be two numbers in [0, 1), got [0.9]"),
        ({"optim": OptimConfig(betas=[-0.1, 0.9])}, "optim.betas must be two numbers in [0, 1)"),
        ({"optim": OptimConfig(eps=0.0)}, "optim.eps must be > 0, got 0.0"),
        ({"optim": OptimConfig(weight_decay=-1e-3)}, "optim.weight_decay must be >= 0, got -0.001"),
        ({"optim": OptimConfig(min_lr_ratio=-0.1)}, "optim.min_lr_ratio must be in [0, 1], got -0.1"),
        ({"trainer": TrainerConfig(keep_last=0)}, "trainer.keep_last must be >= 1, got 0"),
        ({"trainer": TrainerConfig(nonfinite="retry")}, "trainer.nonfinite='retry': skip|abort"),
        ({"trainer": TrainerConfig(max_consecutive_skips=0)}, "trainer.max_consecutive_skips must be >= 1"),
        (
            {"trainer": TrainerConfig(collective_timeout_s=0.0)},
            "trainer.collective_timeout_s must be a number",
        ),
        (
            {"trainer": TrainerConfig(collective_timeout_s=float("nan"))},
            "trainer.collective_timeout_s must be",
        ),
        (
            {"trainer": TrainerConfig(step_timeout_s=-1.0)},
            "trainer.step_timeout_s must be a number of seconds >= 0",
        ),
        ({"trainer": TrainerConfig(eval_batches=-2)}, "trainer.eval_batches must be >= 0 (0: all), got -2"),
        ({"deepspeed": DeepSpeedConfig(zero_stage=0, offload_optimizer=True)}, "needs ZeRO 1-3"),
        ({"deepspeed": DeepSpeedConfig(reduce_bucket_size=0)}, "deepspeed.reduce_bucket_size must be > 0"),
        (
            {"resume": "/nowhere/step-3"},
            "resume='/nowhere/step-3': use auto, never or the path of a checkpoint",
        ),
        ({"output_dir": " "}, "output_dir must not be empty"),
        (
            {"model": TinyModelConfig(llm_heads=4, llm_kv_heads=3)},
            "model.llm_heads=4 must be a multiple of model.llm_kv_heads=3",
        ),
        ({"model": TinyModelConfig(encoder_layers=0)}, "model.encoder_layers must be > 0, got 0"),
        (
            {"model": TinyModelConfig(tokenizer_corpus=["/no/such.jsonl"])},
            "model.tokenizer_corpus: /no/such.jsonl does not exist",
        ),
        (
            {"model": PretrainedModelConfig(path="/no/model")},
            "model.path='/no/model' is not a model checkpoint",
        ),
        (
            {"model": FromComponentsConfig(whisper_dir="/no/w", llm_dir="/")},
            "model.whisper_dir='/no/w' is not a directory",
        ),
    ],
)
def test_values_that_cannot_work(corpus_dir, fields, fragment):
    message = _errors(_config(corpus_dir, **fields))
    assert fragment in message
    assert message.count("\n  - ") == 1  # only this mistake


@pytest.mark.parametrize(
    "field_name, value, fragment",
    [
        ("max_length", 0, "data.max_length must be > 0, got 0"),
        ("num_workers", -2, "data.num_workers must be >= 0, or -1 for automatic, got -2"),
        (
            "max_bad_fraction",
            1.01,
            "data.max_bad_fraction must be in [0, 1] (a share of the manifest), got 1.01",
        ),
        (
            "duration_tolerance_s",
            -0.5,
            "data.duration_tolerance_s must be a number of seconds >= 0, got -0.5",
        ),
        (
            "long_audio_overlap_s",
            -1.0,
            "data.long_audio_overlap_s must be a number of seconds >= 0 (and shorter than the encoder's "
            "window), got -1.0",
        ),
        ("max_audio_seconds", 0.0, "data.max_audio_seconds must be a number of seconds > 0, got 0.0"),
        (
            "max_audio_seconds",
            float("nan"),
            "data.max_audio_seconds must be a number of seconds > 0, got nan",
        ),
    ],
)
def test_data_values(corpus_dir, field_name, value, fragment):
    cfg = _config(corpus_dir)
    setattr(cfg.data, field_name, value)
    message = _errors(cfg)
    assert fragment in message and message.count("\n  - ") == 1


@pytest.mark.parametrize(
    "lora, fragment",
    [
        (LoraConfig(enabled=True, r=0), "stage.lora.r must be >= 1, got 0"),
        (LoraConfig(enabled=True, alpha=0), "stage.lora.alpha must be > 0, got 0"),
        (LoraConfig(enabled=True, dropout=1.0), "stage.lora.dropout must be in [0, 1), got 1.0"),
        (LoraConfig(enabled=True, target_modules=[]), "stage.lora.target_modules must be non-empty"),
    ],
)
def test_lora_values(corpus_dir, lora, fragment):
    message = _errors(_config(corpus_dir, SftStageConfig(lora=lora)))
    assert fragment in message and message.count("\n  - ") == 1


def test_values_at_their_limits_pass(corpus_dir, tmp_path):
    """The checks refuse what cannot work, nothing more."""
    fine = [
        {"optim": OptimConfig(warmup_steps=99, max_grad_norm=0.0, min_lr_ratio=0.0, betas=[0.0, 0.999])},
        {"optim": OptimConfig(min_lr_ratio=1.0, weight_decay=0.0, schedule="constant")},
        {"trainer": TrainerConfig(save_every=1000, eval_every=1000, step_timeout_s=0.0, keep_last=1)},
        {"trainer": TrainerConfig(nonfinite="abort", max_consecutive_skips=1, eval_batches=0)},
        {"resume": "never"},
        {"resume": str(tmp_path)},  # an existing checkpoint folder
        {"data": DataConfig(dir=str(corpus_dir), max_bad_fraction=0.0, duration_tolerance_s=0.0)},
        {"data": DataConfig(dir=str(corpus_dir), max_bad_fraction=1.0, max_length=1)},
    ]
    for fields in fine:
        validate(_config(corpus_dir, **fields), world_size=1)
    # A disabled LoRA's values are never read.
    validate(_config(corpus_dir, SftStageConfig(lora=LoraConfig(enabled=False, r=0))), world_size=1)


# ---------------------------------------------------------------- keys the schema does not have


def test_keys_added_with_plus_are_refused(corpus_dir):
    # What OmegaConf.to_object makes of `+stage.task_weight={asr:3}` and `+trainer.wandb.tags=[a]`.
    cfg = _config(corpus_dir)
    cfg.stage.task_weight = {"asr": 3}
    cfg.trainer.wandb.tags = ["a"]
    message = _errors(cfg)
    assert (
        "unknown key stage.task_weight (did you mean stage.task_weights?); PretrainStageConfig has: name, "
        "train_encoder, train_projector, train_llm, lora, ctc_weight, task_weights" in message
    )
    assert "unknown key trainer.wandb.tags; WandbConfig has: mode, project, name" in message
    assert message.count("\n  - ") == 2


def test_unknown_fields_leave_dict_fields_alone(corpus_dir):
    cfg = _config(corpus_dir, SftStageConfig(task_weights={"emotion_qa": 2.0}))
    assert unknown_fields(cfg) == []
    cfg.model.vocab = 3
    assert unknown_fields(cfg) == [
        f"unknown key model.vocab (did you mean model.vocab_size?); TinyModelConfig has: "
        f"{', '.join(f.name for f in dataclasses.fields(TinyModelConfig))}"
    ]


def test_validation_errors_are_config_errors(corpus_dir):
    with pytest.raises(ConfigError) as info:
        validate(_config(corpus_dir, optim=OptimConfig(lr=-1.0)), 1)
    assert isinstance(info.value, ValueError)
    assert info.value.title == "invalid training config"
    assert info.value.problems == ["optim.lr must be a finite number > 0, got -1.0"]


# ---------------------------------------------------------------- validate_data: config against manifests


def _records(corpus_dir: Path, stage: str, split: str = "train"):  # noqa: ANN202 - datasets.Dataset
    return load_manifest(corpus_dir / stage / f"{split}.jsonl", stage)


def _data_errors(cfg: TrainConfig, train, dev=None) -> str:  # noqa: ANN001
    with pytest.raises(ConfigError, match="the config does not fit the data") as err:
        validate_data(cfg, train, train if dev is None else dev)
    return str(err.value)


@pytest.mark.parametrize("stage", [PretrainStageConfig(), SftStageConfig(), DpoStageConfig()], ids=str)
def test_corpus_fits_the_default_configs(corpus_dir, stage):
    name = stage.name
    validate_data(_config(corpus_dir, stage), _records(corpus_dir, name), _records(corpus_dir, name, "dev"))


@pytest.mark.parametrize("stage", ["pretrain", "sft", "dpo"])
def test_length_bound_is_never_above_the_collators_count(corpus_dir, processor, stage):
    """fewest_tokens is a lower bound of what the real collator renders, so validate_data never refuses
    a max_length that some example fits; and it refuses one just below every bound."""
    dataset = ManifestDataset.from_manifest(str(corpus_dir / stage / "dev.jsonl"), stage)
    collator_type = PreferenceCollator if stage == "dpo" else ConversationCollator
    collator = collator_type(processor, CollatorConfig(max_length=100_000))
    bounds = [b for b, _ in example_bounds(stage, dataset.records, DataConfig.duration_tolerance_s)]
    lengths = []
    for index, bound in enumerate(bounds):
        batch = collator([dataset[index]])
        assert batch["dropped"] == []
        rows = batch["attention_mask"].sum(dim=1)
        real = int(rows[0]) if stage != "dpo" else int(min(rows[0], rows[batch["num_pairs"]]))
        assert 0 < bound <= real, (index, bound, real)
        lengths.append(real)
    stage_cfg = {"pretrain": PretrainStageConfig(), "sft": SftStageConfig(), "dpo": DpoStageConfig()}[stage]
    cfg = _config(corpus_dir, stage_cfg, data=DataConfig(dir=str(corpus_dir), max_length=min(lengths)))
    validate_data(cfg, dataset.records, dataset.records)
    cfg.data.max_length = min(bounds) - 1
    message = _data_errors(cfg, dataset.records)
    assert f"data.max_length={min(bounds) - 1} is shorter than every example of" in message
    assert f"(the shortest needs at least {min(bounds)} tokens): raise data.max_length" in message


def _longest_clip(messages: list[dict]) -> float:
    durations = [i["audio"]["duration"] for m in messages for i in m["content"] if i["type"] == "audio"]
    return max(durations, default=0.0)


def test_clips_longer_than_a_checkpoints_window_fit_but_not_past_max_audio_seconds(corpus_dir, tmp_path):
    """A clip longer than the encoder's window is windowed (lalm.data.features), so it fits; one longer
    than data.max_audio_seconds does not, and an overlap as long as the window is refused."""
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"n_samples": 16_000}))
    records = _records(corpus_dir, "sft").filter(lambda r: _longest_clip(r["messages"]) > 1.5)
    cfg = _config(corpus_dir, SftStageConfig(), init_from=str(tmp_path))
    validate_data(cfg, records, records)  # every clip is longer than the 1-s window
    # Every clip is over 1.5 s in the manifest, so over 1.4 s decoded (duration_tolerance_s 0.1).
    cfg.data.max_audio_seconds = 1.4
    message = _data_errors(cfg, records)
    assert "has a clip longer than data.max_audio_seconds=1.4: raise it" in message
    cfg.data.max_audio_seconds, cfg.data.long_audio_overlap_s = 600.0, 1.0
    message = _data_errors(cfg, records)
    assert "data.long_audio_overlap_s=1.0 is not shorter than the encoder's window (1 s)" in message
    assert message.count("\n  - ") == 1
    cfg.data.long_audio_overlap_s = 0.99
    validate_data(cfg, records, records)


def test_task_weights_against_the_manifest(corpus_dir):
    pretrain = _records(corpus_dir, "pretrain")
    asr_only = pretrain.filter(lambda r: r["task"] == "asr")
    message = _data_errors(_config(corpus_dir, PretrainStageConfig(task_weights={"lid": 2.0})), asr_only)
    assert "stage.task_weights names 'lid', which" in message and "its tasks are ['asr']" in message
    # Config-level, {asr: 0} leaves the other tasks in; this manifest has no other task.
    message = _data_errors(_config(corpus_dir, PretrainStageConfig(task_weights={"asr": 0.0})), asr_only)
    assert "leaves none of the tasks of" in message
    validate_data(_config(corpus_dir, PretrainStageConfig(task_weights={"lid": 0.0})), pretrain, pretrain)


def test_sft_task_weights_count_analysis_mode_only(corpus_dir):
    sft = _records(corpus_dir, "sft")
    # 'chat' is the task label of chat-mode examples: analysis mode, which task_weights groups, has none.
    for chat_weight in (0.5, 1.0):
        stage = SftStageConfig(chat_weight=chat_weight, task_weights={"chat": 2.0})
        message = _data_errors(_config(corpus_dir, stage), sft)
        assert "stage.task_weights names 'chat', which analysis mode of" in message
    validate_data(_config(corpus_dir, SftStageConfig(task_weights={"lid": 6.0})), sft, sft)


@pytest.mark.parametrize(
    "mode, chat_weight, fragment",
    [
        ("analysis", 0.3, "stage.chat_weight=0.3 but"),
        ("chat", 0.5, "stage.chat_weight=0.5 leaves 0.5 of each batch to analysis mode"),
        ("chat", 0.0, "stage.chat_weight=0.0 leaves 1 of each batch to analysis mode"),
    ],
)
def test_chat_weight_against_the_modes(corpus_dir, mode, chat_weight, fragment):
    only = _records(corpus_dir, "sft").filter(lambda r: r["mode"] == mode)
    message = _data_errors(_config(corpus_dir, SftStageConfig(chat_weight=chat_weight)), only)
    assert fragment in message and message.count("\n  - ") == 1
    fitting = 0.0 if mode == "analysis" else 1.0
    validate_data(_config(corpus_dir, SftStageConfig(chat_weight=fitting)), only, only)


def test_data_mistakes_are_listed_together(corpus_dir):
    sft = _records(corpus_dir, "sft")
    analysis = sft.filter(lambda r: r["mode"] == "analysis")
    stage = SftStageConfig(chat_weight=0.5, task_weights={"lidd": 3.0})
    cfg = _config(corpus_dir, stage, data=DataConfig(dir=str(corpus_dir), max_length=8))
    message = _data_errors(cfg, analysis, sft)
    assert message.count("\n  - ") == 4  # max_length for train and dev, no chat examples, the typo
    assert "names 'lidd' (did you mean lid?)" in message
