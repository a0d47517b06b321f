"""The stage registry: every stage has every part, and a newly registered stage is picked up by
manifest loading, the dataset, the data checks, the collator lookup and build's manifest search."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from lalm.config.data_checks import example_bounds
from lalm.config.train import StageConfig
from lalm.data.audio import write_audio
from lalm.data.collators import ConversationCollator
from lalm.data.dataset import ManifestDataset
from lalm.data.manifest import load_manifest, read_manifest_records
from lalm.errors import ManifestError
from lalm.stages.registry import (
    StageSpec,
    get_stage,
    guess_stage,
    load,
    register_stage,
    stage_names,
    unregister_stage,
)
from lalm.training.build import train_manifests

NEW = "chat_sft"  # the throwaway stage: sft's parts under another name


@pytest.fixture
def new_stage() -> Iterator[StageSpec]:
    spec = register_stage(replace(get_stage("sft"), name=NEW))
    yield spec
    unregister_stage(NEW)
    assert NEW not in stage_names()


def _manifest(folder: Path, records: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_audio(folder / "a.wav", np.full(8000, 0.1, np.float32))
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


CLIP = {"path": "a.wav", "duration": 0.5}  # 8,000 samples at 16 kHz
SFT_RECORD = {
    "id": "c1",
    "mode": "analysis",
    "task": "asr",
    "messages": [
        {
            "role": "user",
            "content": [{"type": "audio", "audio": CLIP}, {"type": "text", "text": "Transcribe."}],
        },
        {"role": "assistant", "content": "hello"},
    ],
}
PRETRAIN_RECORD = {"id": "p1", "audio": "a.wav", "task": "asr", "language": "en", "text": "hello"}


def test_the_three_stages_are_registered_in_hand_off_order() -> None:
    assert stage_names() == ("pretrain", "sft", "dpo")


@pytest.mark.parametrize("name", ["pretrain", "sft", "dpo"])
def test_every_stage_has_every_part(name: str) -> None:
    spec = get_stage(name)
    assert issubclass(spec.config, StageConfig) and spec.config().name == name
    assert spec.record_keys and all(key in spec.records_are for key in spec.record_keys)
    assert guess_stage(dict.fromkeys(spec.record_keys)) == name
    parts = spec.parts()
    expected = {"validate_record", "to_example", "collator", "build_stage", "bound_conversations"}
    assert expected <= set(parts) and set(parts) <= expected | {"data_errors"}
    arity = {"validate_record": 3, "to_example": 2, "build_stage": 2, "bound_conversations": 1}
    for part, ref in parts.items():
        obj = load(ref)
        if part == "collator":
            assert inspect.isclass(obj) and callable(obj)
        else:
            assert inspect.isfunction(obj), f"{name}.{part}: {ref} is not a function"
            assert len(inspect.signature(obj).parameters) == arity.get(part, 2), f"{name}.{part}"


def test_a_misspelt_or_unknown_part_or_stage_is_refused() -> None:
    with pytest.raises(ValueError, match=r"a stage part must be 'module:attribute', got 'lalm.data.dataset'"):
        load("lalm.data.dataset")
    with pytest.raises(AttributeError, match="sft_examples"):
        load("lalm.data.dataset:sft_examples")
    with pytest.raises(
        ValueError, match=r"unknown stage 'rlhf'; expected one of \['pretrain', 'sft', 'dpo'\]"
    ):
        get_stage("rlhf")
    with pytest.raises(ValueError, match="stage 'sft' is already registered"):
        register_stage(get_stage("sft"))
    with pytest.raises(ValueError, match="record_keys must name"):
        replace(get_stage("sft"), name="x", record_keys=())


def test_guess_stage_reads_a_records_keys() -> None:
    assert guess_stage({"chosen": "a"}) == "dpo"
    assert guess_stage({"messages": []}) == "sft"
    assert guess_stage({}) == "pretrain"  # nothing to go on: the first stage
    assert guess_stage(SFT_RECORD) == "sft"  # has pretrain's 'task' too
    assert guess_stage(PRETRAIN_RECORD) == "pretrain"
    assert guess_stage({"prompt": [], "chosen": "a", "rejected": "b", "task": "asr", "mode": "chat"}) == "dpo"


def test_config_modules_import_without_torch_or_datasets() -> None:
    code = (
        "import sys, lalm.config.validation, lalm.config.data_checks, lalm.stages.registry\n"
        "print(sorted(m for m in ('torch', 'datasets', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_registered_stage_reads_its_manifests(new_stage: StageSpec, tmp_path: Path) -> None:
    path = _manifest(tmp_path / NEW, [SFT_RECORD])
    records = read_manifest_records(path, NEW)
    assert records == read_manifest_records(path, "sft")
    assert records[0]["messages"][1]["content"] == [{"type": "text", "text": "hello", "audio": None}]
    # Another stage's manifest is named as such, with what the new stage needs instead.
    other = _manifest(tmp_path / "pretrain", [PRETRAIN_RECORD])
    with pytest.raises(ManifestError) as caught:
        read_manifest_records(other, NEW)
    assert str(caught.value) == (
        f"{other}:1: this looks like a pretrain manifest (has 'task', 'audio' and 'text'); "
        f"stage={NEW} needs mode/messages records"
    )
    # build's search for every stage's train manifest (the tiny tokenizer's corpus) finds it.
    assert train_manifests(tmp_path) == [str(tmp_path / "pretrain" / "train.jsonl"), str(path)]


def test_a_registered_stage_gets_its_examples_checks_and_collator(
    new_stage: StageSpec, tmp_path: Path, processor: object
) -> None:
    path = _manifest(tmp_path / NEW, [SFT_RECORD])
    example = ManifestDataset.from_manifest(str(path), NEW)[0]
    reference = ManifestDataset.from_manifest(str(path), "sft")[0]
    assert example.keys() == {"id", "source", "messages", "mode"} and example["mode"] == "analysis"
    audio = example["messages"][0]["content"][0]
    assert audio["type"] == "audio" and audio["waveform"].shape == (8000,)
    np.testing.assert_array_equal(audio["waveform"], reference["messages"][0]["content"][0]["waveform"])
    bounds = list(example_bounds(NEW, load_manifest(path, NEW), 0.0))
    assert bounds == list(example_bounds("sft", load_manifest(path, "sft"), 0.0))
    assert bounds[0][1] == 8000 and bounds[0][0] > 3 * 3  # system + user + assistant, and the clip
    collator_class = load(new_stage.collator)
    assert collator_class is ConversationCollator
    batch, expected = collator_class(processor)([example]), ConversationCollator(processor)([reference])
    assert torch.equal(batch["input_ids"], expected["input_ids"])
    assert int((batch["labels"] != -100).sum()) > 0  # the answer is supervised


def test_an_unknown_stage_is_refused_by_the_dataset(tmp_path: Path) -> None:
    records = load_manifest(_manifest(tmp_path / "sft", [SFT_RECORD]), "sft")
    with pytest.raises(ValueError, match="unknown stage 'chat_sft'"):
        ManifestDataset(records, NEW)
