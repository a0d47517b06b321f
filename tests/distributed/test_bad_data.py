"""Bad data on 2 gloo ranks with real DeepSpeed: skipped, counted and named, never a crash or a hang.

Each launch plants broken files (or text-only turns) where exactly one rank reads them, computed with
the trainer's own sampler (RankBatches over the stage's stream), so that the two ranks' micro-batches
differ in the way that used to stop collectives from matching:

- pretraining under ZeRO-3 with CTC: rank 1's first micro-batch is all dropped (its encoder and CTC
  head used to sit out while rank 0's ran), then one file of every bad kind, and a dev batch that is
  all dropped on rank 0 only;
- SFT under ZeRO-3: rank 0's first micro-batch is text-only, rank 1's has audio, in training and in
  evaluation;
- DPO under ZeRO-3 (policy and reference sharded): rank 1's first micro-batch is all dropped, and so
  is rank 0's dev batch.

A subprocess timeout is the watchdog: a hang fails the test instead of the suite.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from lalm.data.audio import write_audio
from lalm.data.dataset import ManifestDataset
from lalm.data.sampling import EpochStream, RankBatches
from lalm.stages.lm import LanguageModelingStage
from tests.torchrun import TRAIN, cpu_env, torchrun_command

pytestmark = pytest.mark.distributed
ROOT = Path(__file__).resolve().parents[2]
WORLD, MICRO, STEPS = 2, 2, 3  # trainer=smoke: micro-batch 2, global batch 4 (accumulation 1), 3 steps
COMMON = ["trainer=smoke", "model.vocab_size=2000", "data.max_bad_fraction=1.0", "deepspeed=zero3"]
WATCHDOG_S = 300  # a launch takes ~20-40 s on 2 cores; a collective mismatch hangs (NCCL) or stalls


def _torchrun(*overrides: str) -> None:
    """scripts/train.py on 2 gloo ranks; the whole process group is killed if it outlives the watchdog."""
    command, env = torchrun_command(WORLD, TRAIN, *overrides), cpu_env()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=WATCHDOG_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # torchrun and its workers: the group this call started
        stdout, stderr = process.communicate()
        pytest.fail(f"hung for {WATCHDOG_S} s: {' '.join(overrides)}\n{stderr[-4000:]}")
    assert process.returncode == 0, stdout[-2000:] + stderr[-6000:]


def _train(out: Path, corpus: Path, train: str, dev: list[dict[str, Any]], *overrides: str) -> None:
    """One stage on `train` (a manifest path) and the `dev` records, into `out`."""
    _torchrun(
        *overrides,
        f"data.dir={corpus}",
        f"data.train_manifest={train}",
        f"data.dev_manifest={_write(out / 'dev.jsonl', dev)}",
        f"output_dir={out}",
        *COMMON,
    )


def _rank_samples(stream: Any) -> dict[int, list[list[int]]]:
    """{rank: its micro-batch of each step} exactly as the trainer draws them."""
    return {rank: list(RankBatches(stream, MICRO, 1, rank, WORLD, num_steps=STEPS)) for rank in range(WORLD)}


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write(path: Path, records: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return str(path)


def _absolute(value: Any, folder: Path) -> Any:
    """A corpus record with every audio path made absolute (the manifest is written elsewhere)."""
    if isinstance(value, list):
        return [_absolute(v, folder) for v in value]
    if not isinstance(value, dict):
        return value
    if "path" in value and "duration" in value:
        return {**value, "path": str((folder / value["path"]).resolve())}
    return {k: _absolute(v, folder) for k, v in value.items()}


def _corpus(corpus_dir: Path, stage: str, split: str, n: int, skip: int = 0) -> list[dict[str, Any]]:
    lines = (corpus_dir / stage / f"{split}.jsonl").read_text().splitlines()[skip : skip + n]
    return [_absolute(json.loads(line), corpus_dir / stage) for line in lines]


def _bad_files(folder: Path, real_wav: Path) -> dict[str, Path]:
    """One file of each bad kind (and a 7-s clip: longer than the pretraining run's max_audio_seconds)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / f"{name}.wav" for name in ("zero", "text", "chopped", "nan", "long")}
    files["zero"].write_bytes(b"")
    files["text"].write_text("this is not audio\n")
    whole = real_wav.read_bytes()
    files["chopped"].write_bytes(whole[: len(whole) // 2])
    wave = 0.1 * np.random.default_rng(0).standard_normal(16_000)
    wave[500:510] = np.nan
    sf.write(str(files["nan"]), wave, 16_000, subtype="FLOAT")
    write_audio(files["long"], 0.3 * np.sin(np.arange(7 * 16_000) / 20))
    return files


def _train_records(run: Path) -> list[dict[str, Any]]:
    return [r for r in _read(run / "metrics.jsonl") if "lr" in r]


def _eval_records(run: Path) -> list[dict[str, Any]]:
    return [r for r in _read(run / "metrics.jsonl") if "eval/loss" in r]


# --- pretraining: every bad kind, an all-dropped micro-batch on one rank, CTC, ZeRO-3 -------------------


@pytest.fixture(scope="module")
def pretrain(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bad_pretrain")
    records = _corpus(corpus_dir, "pretrain", "train", 16)
    samples = _rank_samples(EpochStream(len(records), seed=0))
    read = [i for rank in samples.values() for batch in rank for i in batch]
    assert len(set(read)) == len(read) == WORLD * MICRO * STEPS  # every record is read once, by one rank
    files = _bad_files(out / "audio", Path(records[0]["audio"]["path"]))
    shorter = {"path": records[0]["audio"]["path"], "duration": records[0]["audio"]["duration"] + 1.0}
    plants = {  # (rank, step, slot in the micro-batch) -> (audio or None for a long text, reason)
        (1, 0, 0): (files["zero"], "empty_audio"),  # rank 1's first micro-batch: all dropped
        (1, 0, 1): (files["text"], "unreadable_audio"),
        (1, 1, 0): (files["chopped"], "truncated_audio"),
        (1, 1, 1): (files["nan"], "nonfinite_audio"),
        (0, 2, 0): (shorter, "duration_mismatch"),
        (0, 2, 1): (None, "longer_than_max_length"),
        (1, 2, 0): (files["long"], "audio_longer_than_max_audio_seconds"),
    }
    expected = []
    for (rank, step, slot), (audio, reason) in plants.items():
        index = samples[rank][step][slot]
        record = records[index]
        if audio is None:
            record["text"] = "Anna goes to the market on Monday. " * 200  # > max_length 1024 tokens
        else:
            record["audio"] = audio if isinstance(audio, dict) else {"path": str(audio), "duration": None}
        file = None if audio is None else str(audio["path"] if isinstance(audio, dict) else audio)
        expected.append(
            {
                "step": step + 1,
                "rank": rank,
                "id": record["id"],
                "reason": reason,
                "file": file,
                "line": index + 1,
            }
        )
    # Dev: rank 0 evaluates examples 0-1 (both broken: an all-dropped batch), rank 1 examples 2-3.
    dev = _corpus(corpus_dir, "pretrain", "dev", 4)
    dev[0]["audio"] = {"path": str(files["text"]), "duration": None}
    dev[1]["audio"] = {"path": str(files["zero"]), "duration": None}
    train_manifest = _write(out / "train.jsonl", records)
    overrides = ("stage=pretrain", "stage.ctc_weight=0.5", "data.max_audio_seconds=6.5")
    _train(out, corpus_dir, train_manifest, dev, *overrides)
    return {"run": out / "pretrain", "expected": expected, "manifest": train_manifest}


def test_pretrain_with_bad_files_on_one_rank_completes(pretrain: dict[str, Any]) -> None:
    run = pretrain["run"]
    assert (run / "final" / "config.json").is_file()
    records = _train_records(run)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in records)  # no NaN clip got through
    assert [r["dropped"] for r in records] == [2, 4, 7]  # cumulative
    # Real examples only (cumulative): 2 + 0 (rank 1: a placeholder), 2 + 0, 0 + 1.
    assert [r["examples_seen"] for r in records] == [2, 4, 5]
    (evaluation,) = _eval_records(run)
    assert evaluation["eval/dropped"] == 2 and math.isfinite(evaluation["eval/loss"])


def test_pretrain_counts_each_reason_in_its_step(pretrain: dict[str, Any]) -> None:
    records = {r["step"]: r for r in _train_records(pretrain["run"])}
    for step, record in records.items():
        counts = {k.split("/", 1)[1]: v for k, v in record.items() if k.startswith("dropped/")}
        wanted: dict[str, int] = {}
        for item in pretrain["expected"]:
            if item["step"] == step:
                wanted[item["reason"]] = wanted.get(item["reason"], 0) + 1
        assert counts == wanted, (step, record)


def test_pretrain_names_each_bad_example_with_its_rank(pretrain: dict[str, Any]) -> None:
    lines = _read(pretrain["run"] / "bad_examples.jsonl")
    train = [line for line in lines if line["source"].startswith(pretrain["manifest"] + ":")]
    assert all(set(line) >= {"step", "rank", "id", "source", "reason", "file", "detail"} for line in lines)
    assert all(isinstance(line["step"], int) and line["detail"] for line in train)
    got = sorted((line["rank"], line["id"], line["reason"], line["file"], line["source"]) for line in train)
    wanted = sorted(
        (item["rank"], item["id"], item["reason"], item["file"], f"{pretrain['manifest']}:{item['line']}")
        for item in pretrain["expected"]
    )
    assert got == wanted


# --- SFT: one rank text-only, the other with audio, ZeRO-3 ------------------------------------------------


def _text_only(record: dict[str, Any]) -> dict[str, Any]:
    messages = [{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "Hello."}]
    return {"id": record["id"], "mode": record["mode"], "messages": messages}


def _has_audio(record: dict[str, Any]) -> bool:
    return '"type": "audio"' in json.dumps(record)


def _sft_split(records: list[dict[str, Any]], path: Path) -> tuple[int, dict[int, list[list[int]]]]:
    """A seed whose first step gives the ranks disjoint SFT examples (the stream draws with replacement),
    and each rank's micro-batches under it."""
    dataset = ManifestDataset.from_manifest(_write(path, records), "sft")
    stage = LanguageModelingStage("sft", chat_weight=0.5)
    for seed in range(100):
        samples = _rank_samples(stage.sample_stream(dataset, seed))
        if not set(samples[0][0]) & set(samples[1][0]):
            return seed, samples
    raise AssertionError("no seed separates the ranks' first micro-batches")


@pytest.fixture(scope="module")
def sft(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("text_only_sft")
    pool = _corpus(corpus_dir, "sft", "train", 200)
    records = [r for r in pool if r["mode"] == "chat"][:8] + [r for r in pool if r["mode"] == "analysis"][:8]
    assert len(records) == 16 and all(_has_audio(r) for r in records)
    seed, samples = _sft_split(records, out / "probe.jsonl")
    for index in samples[0][0]:  # rank 0's first micro-batch: no audio at all; rank 1's: audio
        records[index] = _text_only(records[index])
    assert all(_has_audio(records[i]) for i in samples[1][0])
    dev = _corpus(corpus_dir, "sft", "dev", 4)
    dev[0], dev[1] = _text_only(dev[0]), _text_only(dev[1])  # rank 0's dev batch text-only too
    train = _write(out / "train.jsonl", records)
    _train(out, corpus_dir, train, dev, "stage=sft", "stage.chat_weight=0.5", f"trainer.seed={seed}")
    return out / "sft"


def test_sft_text_only_on_one_rank_completes_under_zero3(sft: Path) -> None:
    assert (sft / "final" / "config.json").is_file()
    records = _train_records(sft)
    assert [r["step"] for r in records] == [1, 2, 3] and records[-1]["dropped"] == 0
    assert [r["examples_seen"] for r in records] == [4, 8, 12]  # the placeholder is not an example
    assert all(math.isfinite(r["loss"]) and r["supervised_tokens"] > 0 for r in records)
    (evaluation,) = _eval_records(sft)
    assert evaluation["eval/dropped"] == 0 and math.isfinite(evaluation["eval/loss"])


# --- DPO: an all-dropped micro-batch on one rank, policy and reference under ZeRO-3 ----------------------


@pytest.fixture(scope="module")
def dpo(corpus_dir: Path, pretrain: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bad_dpo")
    records = _corpus(corpus_dir, "dpo", "train", 16)
    samples = _rank_samples(EpochStream(len(records), seed=0))
    first_clip = records[0]["prompt"][0]["content"][0]["audio"]["path"]
    files = _bad_files(out / "audio", Path(first_clip))

    def plant(record: dict[str, Any], file: Path) -> None:
        audio = [i for m in record["prompt"] for i in m["content"] if i["type"] == "audio"]
        audio[0]["audio"] = {"path": str(file), "duration": None}

    plant(records[samples[1][0][0]], files["nan"])  # rank 1's first micro-batch: both pairs dropped
    plant(records[samples[1][0][1]], files["chopped"])
    dev = _corpus(corpus_dir, "dpo", "dev", 4)
    plant(dev[0], files["zero"])  # rank 0's dev batch: all dropped
    plant(dev[1], files["text"])
    train = _write(out / "train.jsonl", records)
    _train(out, corpus_dir, train, dev, "stage=dpo", f"init_from={pretrain['run'] / 'final'}")
    return out / "dpo"


def test_dpo_with_an_all_dropped_rank_completes_and_its_placeholder_weighs_nothing(dpo: Path) -> None:
    assert (dpo / "final" / "config.json").is_file()
    first, *rest = _train_records(dpo)
    # Only rank 0's two pairs count; policy == reference, so the loss is exactly log 2 per pair.
    assert first["pairs"] == 2 and first["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["dropped/nonfinite_audio"] == 1 and first["dropped/truncated_audio"] == 1
    assert [r["pairs"] for r in rest] == [4, 4]
    assert [r["examples_seen"] for r in (first, *rest)] == [2, 6, 10]
    (evaluation,) = _eval_records(dpo)
    assert evaluation["eval/dropped"] == 2 and math.isfinite(evaluation["eval/loss"])
