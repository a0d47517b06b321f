"""The stage registry: every stage has every part, and a newly registered stage is picked up by
manifest loading, the dataset, the data checks, the collator lookup, build's manifest search, config
validation's stage checks and evaluation (its manifests' kind, how they are scored, what scripts/
evaluate.py and scripts/generate.py write of their references): its registration is the one edit."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lalm.config.data_checks import example_bounds
from lalm.config.eval import EvalConfig, GenerationConfig
from lalm.config.model import TinyModelConfig
from lalm.config.train import DataConfig, SftStageConfig, StageConfig, TrainConfig
from lalm.config.validation import validate
from lalm.data.audio import write_audio
from lalm.data.collators import ConversationCollator
from lalm.data.dataset import ManifestDataset
from lalm.data.manifest import load_manifest, read_manifest_records, validate_dpo, validate_pretrain
from lalm.errors import ConfigError, ManifestError
from lalm.eval.batch_generation import reference_fields
from lalm.eval.runner import manifest_kind, run_evaluation
from lalm.stages.registry import (
    EVALUATIONS,
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
    assert spec.evaluation in EVALUATIONS
    parts = spec.parts()
    expected = {
        "validate_record",
        "to_example",
        "collator",
        "build_stage",
        "bound_conversations",
        "reference_fields",
    }
    assert expected <= set(parts) and set(parts) <= expected | {"config_errors", "data_errors"}
    assert "config_errors" in parts  # the three stages each check their own settings
    arity = {
        "validate_record": 3,
        "to_example": 2,
        "build_stage": 2,
        "bound_conversations": 1,
        "reference_fields": 1,
        "config_errors": 1,
    }
    for part, ref in parts.items():
        obj = load(ref)
        if part == "collator":
            assert inspect.isclass(obj) and callable(obj)
        else:
            assert inspect.isfunction(obj), f"{name}.{part}: {ref} is not a function"
            assert len(inspect.signature(obj).parameters) == arity.get(part, 2), f"{name}.{part}"


def test_pairs_are_compared_and_the_rest_generated() -> None:
    assert {name: get_stage(name).evaluation for name in stage_names()} == {
        "pretrain": "generation",
        "sft": "generation",
        "dpo": "preference",
    }
    with pytest.raises(
        ValueError, match=r"evaluation must be one of \['generation', 'preference'\], got 'rank'"
    ):
        replace(get_stage("dpo"), name="x", evaluation="rank")


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


# ---------------------------------------------------------------- evaluation and config checks

# Two throwaway stages with records of their own: pretrain's parts and dpo's for the rest.
TRANSCRIBE, RANKED = "transcribe", "ranked"


def validate_transcript(record: dict[str, Any], base: Path, check_files: bool) -> dict[str, Any]:
    """TRANSCRIBE's records, {"id", "audio", "transcript"}: English ASR examples."""
    asr = {"id": record.get("id"), "audio": record.get("audio"), "task": "asr", "language": "en"}
    return validate_pretrain({**asr, "text": record.get("transcript")}, base, check_files)


def validate_ranked(record: dict[str, Any], base: Path, check_files: bool) -> dict[str, Any]:
    """RANKED's records, {"id", "prompt", "better", "worse"}: preference pairs."""
    pair = {"id": record.get("id"), "prompt": record.get("prompt")}
    return validate_dpo(
        {**pair, "chosen": record.get("better"), "rejected": record.get("worse")}, base, check_files
    )


def only_analysis(cfg: TrainConfig) -> list[str]:
    """A throwaway stage's own check: analysis mode only."""
    if cfg.stage.chat_weight == 0:
        return []
    return [f"stage={cfg.stage.name} trains analysis mode only: set stage.chat_weight=0"]


@pytest.fixture
def own_records() -> Iterator[None]:
    """TRANSCRIBE and RANKED, registered for the test."""
    for base, name, keys, validator in (
        ("pretrain", TRANSCRIBE, ("audio", "transcript"), validate_transcript),
        ("dpo", RANKED, ("prompt", "better", "worse"), validate_ranked),
    ):
        spec = replace(
            get_stage(base),
            name=name,
            record_keys=keys,
            records_are="/".join(keys) + " records",
            validate_record=f"{__name__}:{validator.__name__}",
        )
        register_stage(spec)
    yield
    unregister_stage(TRANSCRIBE)
    unregister_stage(RANKED)


@pytest.fixture
def checkpoint(tiny: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny_checkpoint")
    model, processor = tiny
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def test_registered_stages_are_evaluated_by_their_registration(
    own_records: None, checkpoint: Path, tmp_path: Path
) -> None:
    transcripts = [{"id": f"t{i}", "audio": "a.wav", "transcript": f"hello {i}"} for i in range(2)]
    question = {
        "role": "user",
        "content": [{"type": "audio", "audio": CLIP}, {"type": "text", "text": "Say?"}],
    }
    pairs = [{"id": f"r{i}", "prompt": [question], "better": "hello", "worse": f"bye {i}"} for i in range(2)]
    paths = [str(_manifest(tmp_path / TRANSCRIBE, transcripts)), str(_manifest(tmp_path / RANKED, pairs))]
    assert [manifest_kind(path) for path in paths] == [TRANSCRIBE, RANKED]
    out = tmp_path / "eval"
    cfg = EvalConfig(
        checkpoint=str(checkpoint),
        manifests=paths,
        output_dir=str(out),
        reference=str(checkpoint),
        generation=GenerationConfig(max_new_tokens=4),
    )
    metrics = run_evaluation(cfg)
    # TRANSCRIBE's are generated for and scored as pretrain's examples are: the record's task and
    # language, its transcript the reference.
    items = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [list(item)[:6] for item in items] == [
        ["id", "manifest", "task", "language", "target_language", "reference"]
    ] * 2
    assert [(i["id"], i["task"], i["language"], i["reference"]) for i in items] == [
        ("t0", "asr", "en", "hello 0"),
        ("t1", "asr", "en", "hello 1"),
    ]
    assert metrics["asr/en/n"] == 2 and "asr/en/wer" in metrics and metrics["generation/dropped"] == 0
    # RANKED's are compared as dpo's pairs are, against the reference (here the policy itself).
    rows = [json.loads(line) for line in (out / "preferences.jsonl").read_text().splitlines()]
    assert [(row["id"], row["rewards/chosen"], row["rewards/rejected"]) for row in rows] == [
        ("r0", 0.0, 0.0),
        ("r1", 0.0, 0.0),
    ]
    assert metrics["preference/n"] == 2 and metrics["preference/dropped"] == 0
    # scripts/generate.py's lines read the same reference fields.
    transcript, pair = (
        read_manifest_records(paths[0], TRANSCRIBE)[0],
        read_manifest_records(paths[1], RANKED)[0],
    )
    assert reference_fields(transcript, TRANSCRIBE) == {"task": "asr", "reference": "hello 0"}
    assert reference_fields(pair, RANKED) == {"task": None, "reference": "hello", "rejected": "bye 0"}


def _train_config(corpus_dir: Path, stage: StageConfig) -> TrainConfig:
    """A valid config of a stage that trains on sft's manifests."""
    data = DataConfig(
        dir=str(corpus_dir),
        train_manifest=str(corpus_dir / "sft" / "train.jsonl"),
        dev_manifest=str(corpus_dir / "sft" / "dev.jsonl"),
    )
    return TrainConfig(stage=stage, model=TinyModelConfig(), data=data, output_dir="/tmp/unused")


def test_validate_runs_a_registered_stages_own_checks(new_stage: StageSpec, corpus_dir: Path) -> None:
    validate(_train_config(corpus_dir, SftStageConfig(name=NEW)), world_size=1)
    with pytest.raises(ConfigError, match=r"stage.chat_weight must be in \[0, 1\], got 1.5"):
        validate(_train_config(corpus_dir, SftStageConfig(name=NEW, chat_weight=1.5)), world_size=1)
    # Its own checks, not sft's: the registry says which.
    register_stage(replace(new_stage, config_errors=f"{__name__}:only_analysis"), replace=True)
    validate(_train_config(corpus_dir, SftStageConfig(name=NEW, chat_weight=0.0)), world_size=1)
    with pytest.raises(ConfigError) as caught:
        validate(_train_config(corpus_dir, SftStageConfig(name=NEW, chat_weight=1.5)), world_size=1)
    assert caught.value.problems == [f"stage={NEW} trains analysis mode only: set stage.chat_weight=0"]
    register_stage(replace(new_stage, config_errors=None), replace=True)  # none at all
    validate(_train_config(corpus_dir, SftStageConfig(name=NEW, chat_weight=1.5)), world_size=1)
