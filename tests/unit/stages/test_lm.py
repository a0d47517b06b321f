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


def test_build_stage_hands_the_weights_to_the_stage() -> None:
    weights = {"asr": 3.0}
    pretrain = TrainConfig(
        stage=PretrainStageConfig(task_weights=weights), data=DataConfig(dir="d"), output_dir="o"
    )
    stage, reference = build_stage(pretrain)
    assert isinstance(stage, LanguageModelingStage) and stage.task_weights == weights and reference is None
    sft = TrainConfig(stage=SftStageConfig(), data=DataConfig(dir="d"), output_dir="o")
    assert build_stage(sft)[0].task_weights == {}
    sft = TrainConfig(stage=SftStageConfig(task_weights=weights), data=DataConfig(dir="d"), output_dir="o")
    assert build_stage(sft)[0].task_weights == weights


class _Records:
    """What sample_stream reads of a dataset: its records' columns."""

    def __init__(self, modes: list[str], tasks: list[str | None]) -> None:
        self.records = {"mode": modes, "task": tasks}


def test_sft_task_weights_act_within_analysis_and_keep_the_chat_share() -> None:
    # 40 chat, 30 asr, 30 lid; chat_weight 0.25, lid 2x: chat 0.25, asr 0.75 x 30/90, lid 0.75 x 60/90.
    tasks = ["chat"] * 40 + ["asr"] * 30 + ["lid"] * 30
    modes = ["chat"] * 40 + ["analysis"] * 60
    stage = LanguageModelingStage("sft", chat_weight=0.25, task_weights={"lid": 2.0})
    stream = stage.sample_stream(_Records(modes, tasks), seed=1)
    drawn = Counter(tasks[stream[k]] for k in range(8000))
    assert drawn["chat"] / 8000 == pytest.approx(0.25, abs=0.02)
    assert drawn["asr"] / 8000 == pytest.approx(0.25, abs=0.02)
    assert drawn["lid"] / 8000 == pytest.approx(0.5, abs=0.02)
    with pytest.raises(ValueError, match="leaves none"):
        LanguageModelingStage("sft", 0.25, task_weights={"lid": 0.0, "asr": 0.0}).sample_stream(
            _Records(modes, tasks), seed=1
        )
    with pytest.raises(
        ValueError, match=r"does not have: \['chat'\]"
    ):  # chat is a mode, not an analysis task
        LanguageModelingStage("sft", 0.25, task_weights={"chat": 2.0}).sample_stream(
            _Records(modes, tasks), seed=1
        )
