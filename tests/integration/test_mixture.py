"""Pretraining on a 2-source data.mixture (the synthetic corpus split in two): it trains, logs the
examples drawn from each source per step, and a resumed run sees the same examples per step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lalm.data.manifest import read_manifest_records, write_manifest
from tests.integration.runs import run_stage

# Constant rate: a run of 2 steps and one of 4 then share their schedule for the steps both take.
SETTINGS = ("optim.schedule=constant", "optim.warmup_steps=0", "trainer.eval_every=0", "data.num_workers=0")


@pytest.fixture(scope="module")
def halves(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The corpus' pretrain train manifest split into two sources (absolute audio paths)."""
    records = read_manifest_records(corpus_dir / "pretrain" / "train.jsonl", "pretrain")
    records = [{k: v for k, v in r.items() if k != "_source"} for r in records]
    folder = tmp_path_factory.mktemp("mixture")
    cut = len(records) // 4
    paths = folder / "small.jsonl", folder / "large.jsonl"
    write_manifest(paths[0], records[:cut])
    write_manifest(paths[1], records[cut:])
    return paths


def _mixture(halves: tuple[Path, Path]) -> str:
    # The small quarter gets 3x the large part's weight: most draws come from it despite its size.
    return f"data.mixture.sources=[{{path:'{halves[0]}',weight:3}},{{path:'{halves[1]}',weight:1}}]"


def _train_records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "loss" in r and "step" in r]


def test_pretraining_on_a_mixture_logs_each_sources_draws(corpus_dir, halves, tmp_path):
    trainer, before = run_stage(corpus_dir, tmp_path, "pretrain", _mixture(halves), *SETTINGS)
    records = _train_records(tmp_path / "pretrain")
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(r["loss"] == r["loss"] and r["loss"] < 1e4 for r in records)  # finite
    for record in records:  # smoke: global batch 4, every example counted once, by its source
        assert record.get("mix/small", 0) + record.get("mix/large", 0) == 4, record
    assert sum(r.get("mix/small", 0) for r in records) >= 6  # share 3/4 of 12 draws: 9 +- 1
    changed = [n for n, p in trainer.engine.module.named_parameters() if not p.detach().equal(before[n])]
    assert changed
    assert (tmp_path / "pretrain" / "final" / "config.json").is_file()


def test_a_resumed_mixture_run_sees_the_same_examples(corpus_dir, halves, tmp_path, capsys):
    mixture = _mixture(halves)
    run_stage(corpus_dir, tmp_path / "whole", "pretrain", mixture, *SETTINGS, "trainer.max_steps=4")
    first = [mixture, *SETTINGS, "trainer.save_every=2"]
    run_stage(corpus_dir, tmp_path / "split", "pretrain", *first, "trainer.max_steps=2")
    capsys.readouterr()
    run_stage(corpus_dir, tmp_path / "split", "pretrain", *first, "trainer.max_steps=4")
    checkpoint = tmp_path / "split" / "pretrain" / "checkpoints" / "step-0000002"
    assert f"resuming from {checkpoint}" in capsys.readouterr().out
    whole = _train_records(tmp_path / "whole" / "pretrain")
    split = _train_records(tmp_path / "split" / "pretrain")
    assert [r["step"] for r in split] == [1, 2, 3, 4]
    keys = ("mix/small", "mix/large", "tokens", "supervised_tokens")
    assert [[r.get(k) for k in keys] for r in split] == [[r.get(k) for k in keys] for r in whole]
    assert [r["loss"] for r in split] == pytest.approx([r["loss"] for r in whole], rel=1e-5)
