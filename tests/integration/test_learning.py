"""The tiny model learns: a few hundred steps on a handful of real synthetic utterances drive the loss
down by a large factor, and greedy decoding then reproduces a training transcript. A change that
breaks learning (labels, masks, audio merge, optimizer, schedule) fails here even though CI never
runs `make demo`."""

from __future__ import annotations

import json

from lalm.config.eval import GenerationConfig
from lalm.data.dataset import ManifestDataset
from lalm.data.manifest import read_manifest_records
from lalm.eval.generation import generate_all
from lalm.eval.runner import _Prompts
from tests.integration.runs import run_stage


def _handful(corpus_dir, path, count=6):
    records = read_manifest_records(corpus_dir / "pretrain" / "train.jsonl", "pretrain")
    chosen = [
        r for r in records if r["task"] == "asr" and r["language"] == "en" and r["audio"]["duration"] < 3.5
    ]
    with path.open("w") as handle:
        for record in chosen[:count]:
            record = {k: v for k, v in record.items() if k != "_source"}
            handle.write(json.dumps(record) + "\n")
    return [r["text"] for r in chosen[:count]]


def test_loss_falls_and_greedy_decoding_reproduces_a_transcript(corpus_dir, tmp_path):
    manifest = tmp_path / "handful.jsonl"
    transcripts = _handful(corpus_dir, manifest)
    trainer, _ = run_stage(
        corpus_dir,
        tmp_path / "run",
        "pretrain",
        f"data.train_manifest={manifest}",
        f"data.dev_manifest={manifest}",
        "model.window_seconds=4",
        "trainer.max_steps=120",
        "trainer.micro_batch_size=6",
        "trainer.global_batch_size=6",
        "trainer.eval_every=0",
        "optim.lr=3e-3",
        "optim.warmup_steps=10",
    )
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "pretrain" / "metrics.jsonl").open()]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first / 20, (first, last)
    model = trainer.engine.module.hf.eval()
    dataset = ManifestDataset.from_manifest(str(manifest), "pretrain")
    predictions = generate_all(
        model,
        trainer.processor,
        _Prompts(dataset, list(range(len(dataset)))),
        6,
        GenerationConfig(max_new_tokens=32),
    )
    exact = [predictions[dataset.records[i]["id"]] == transcripts[i] for i in range(len(dataset))]
    assert sum(exact) >= len(exact) // 2, list(predictions.values())
