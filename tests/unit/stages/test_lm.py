"""The pretraining stage's task mixture (stage.task_weights)."""

from __future__ import annotations

from collections import Counter

import pytest

from lalm.config.train import DataConfig, PretrainStageConfig, SftStageConfig, TrainConfig
from lalm.stages.lm import LanguageModelingStage, task_mixture
from lalm.training.build import build_stage

TASKS = ["asr"] * 60 + ["lid"] * 20 + ["sound"] * 20


def test_task_weights_scale_each_example_of_a_task() -> None:
    # asr: 60 examples x 2 = 120, lid: 20 x 1 (unlisted) = 20, sound: 20 x 0 = left out -> 120 : 20.
    stream = task_mixture(TASKS, {"asr": 2.0, "sound": 0.0}, seed=3)
    drawn = Counter(TASKS[stream[k]] for k in range(7000))
    assert set(drawn) == {"asr", "lid"}
    assert drawn["asr"] / 7000 == pytest.approx(120 / 140, abs=0.02)
    assert [stream[k] for k in range(50)] == [
        task_mixture(TASKS, {"asr": 2.0, "sound": 0.0}, 3)[k] for k in range(50)
    ]


def test_unknown_task_is_named() -> None:
    with pytest.raises(ValueError, match=r"\['caption'\].*\['asr', 'lid', 'sound'\]"):
        task_mixture(TASKS, {"caption": 2.0}, seed=0)


def test_build_stage_hands_the_weights_to_pretraining_only() -> None:
    weights = {"asr": 3.0}
    pretrain = TrainConfig(
        stage=PretrainStageConfig(task_weights=weights), data=DataConfig(dir="d"), output_dir="o"
    )
    stage, reference = build_stage(pretrain)
    assert isinstance(stage, LanguageModelingStage) and stage.task_weights == weights and reference is None
    sft = TrainConfig(stage=SftStageConfig(), data=DataConfig(dir="d"), output_dir="o")
    assert build_stage(sft)[0].task_weights == {}
