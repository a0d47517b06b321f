"""The language-modelling stage: task mixture (stage.task_weights), and placeholders and dropped
examples leaving its loss and units alone."""

from __future__ import annotations

import copy
from collections import Counter

import pytest
import torch

from lalm.config.train import DataConfig, PretrainStageConfig, SftStageConfig, TrainConfig
from lalm.data.collators import ConversationCollator
from lalm.data.dataset import ManifestDataset
from lalm.models.tokenizer import SPECIAL_TOKENS
from lalm.models.training import AudioLanguageModel, build_ctc_head
from lalm.stages.lm import LanguageModelingStage, task_mixture
from lalm.training.build import build_stage
from tests.unit.stages.batches import Engine, marker, text_only, without_placeholder

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


def _grads(model: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor | None]:
    return {n: p.grad for n, p in model.named_parameters() if p.requires_grad and n.startswith(prefix)}


def test_a_placeholder_changes_neither_loss_nor_units_and_runs_the_encoder(tiny) -> None:  # noqa: ANN001
    """Text-only SFT batch: with its placeholder the encoder is in the graph (every encoder weight gets
    a gradient, as ZeRO-2/3 need on every rank) and the loss, units and LLM gradients are unchanged."""
    model, processor = tiny
    stage = LanguageModelingStage("sft", chat_weight=0.5)
    batch = ConversationCollator(processor)([text_only("a"), text_only("b", "Hello there, my friend.")])
    bare = without_placeholder(batch)
    placed, plain = copy.deepcopy(model).eval(), copy.deepcopy(model).eval()
    out, ref = stage.forward(placed, batch), stage.forward(plain, bare)
    assert out.units == ref.units == stage.count_units(batch) == stage.count_units(bare) > 0
    torch.testing.assert_close(out.loss, ref.loss, rtol=1e-5, atol=1e-5)
    out.loss.backward()
    ref.loss.backward()
    encoder = _grads(placed, "model.audio_tower")
    assert encoder and all(g is not None and not g.any() for g in encoder.values())
    assert all(g is None for g in _grads(plain, "model.audio_tower").values())  # what used to happen
    llm, llm_ref = _grads(placed, "model.language_model"), _grads(plain, "model.language_model")
    assert llm and set(llm) == set(llm_ref)
    for name, grad in llm.items():
        torch.testing.assert_close(grad, llm_ref[name], rtol=1e-4, atol=1e-6, msg=name)


def test_an_all_dropped_micro_batch_of_one_runs_encoder_and_ctc_head_at_weight_0(tiny) -> None:  # noqa: ANN001
    """Pretraining with CTC, micro-batch 1, its only example dropped: it used to crash ("cannot reshape
    a tensor of 0 elements"); now a weight-0 step in which every weight, the CTC head's included, gets
    a zero gradient, so ZeRO's hooks fire on this rank as on the others."""
    model, processor = tiny
    model = copy.deepcopy(model)
    model = AudioLanguageModel(model, build_ctc_head(model)).train()
    special = tuple(processor.tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)))
    stage = LanguageModelingStage("pretrain", ctc_weight=0.5, special_ids=special)
    batch = ConversationCollator(processor)([marker("u1", "nonfinite_audio")])
    assert stage.count_units(batch) == 0
    out = stage.forward(Engine(model), batch)
    assert (
        float(out.loss.detach()) == 0.0
        and out.units == 0
        and {k: float(v) for k, v in out.metrics.items()} == {"ctc": 0.0, "lm_loss": 0.0}
    )
    out.loss.backward()
    grads = _grads(model, "")
    assert any(name.startswith("ctc_head.") for name in grads)
    assert all(g is not None and not g.any() for g in grads.values()), [
        n for n, g in grads.items() if g is None
    ]


def test_ctc_loss_is_unchanged_by_a_dropped_example(tiny, corpus_dir) -> None:  # noqa: ANN001
    """A marker among real pretraining examples leaves exactly the batch of the real ones."""
    model, processor = tiny
    model = copy.deepcopy(model)
    model = AudioLanguageModel(model, build_ctc_head(model)).eval()
    special = tuple(processor.tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)))
    stage = LanguageModelingStage("pretrain", ctc_weight=0.5, special_ids=special)
    dataset = ManifestDataset.from_manifest(str(corpus_dir / "pretrain" / "train.jsonl"), "pretrain")
    examples = [dataset[i] for i in range(4)]
    collator = ConversationCollator(processor)
    with torch.no_grad():
        ref = stage.forward(Engine(model), collator(examples))
        out = stage.forward(Engine(model), collator([examples[0], marker("x"), *examples[1:]]))
    metrics, expected = ({k: float(v) for k, v in m.items()} for m in (out.metrics, ref.metrics))
    assert out.units == ref.units and metrics == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(out.loss, ref.loss)
