"""scripts/precompute_reference.py writes the trainer's own reference cache: a DPO run then reads it
instead of computing it, and trains exactly as a run that computed the cache itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lalm.training.reference_cache import FILE_NAME
from tests.integration.runs import compose_train, run_stage
from tests.torchrun import ROOT, cpu_env

SCRIPT = str(ROOT / "scripts" / "precompute_reference.py")
# An in-process run of this session (run_stage) left its rendezvous in the environment: a child that
# inherited MASTER_PORT would try to listen on the port this process holds.
RENDEZVOUS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(scope="module")
def sft_final(corpus_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("precompute_init")
    run_stage(corpus_dir, out, "sft", "trainer.max_steps=1", "trainer.eval_every=0")
    return out / "sft" / "final"


def _overrides(corpus: Path, output: Path, init: Path, *extra: str) -> list[str]:
    """The same overrides as tests/integration/runs.run_stage gives a DPO run of 2 steps."""
    common = [f"data.dir={corpus}", f"output_dir={output}", "trainer=smoke", "model.vocab_size=2000"]
    return ["stage=dpo", *common, f"init_from={init}", "trainer.max_steps=2", *extra]


def _train_records(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "lr" in r]


def test_precomputed_cache_is_read_by_training_and_gives_the_same_losses(
    corpus_dir, sft_final, tmp_path, capfd
):
    pre = tmp_path / "pre"
    done = subprocess.run(
        [sys.executable, SCRIPT, *_overrides(corpus_dir, pre, sft_final)],
        # As many threads as this process: the tables are compared bit for bit with an in-process run.
        env={
            k: v
            for k, v in cpu_env(OMP_NUM_THREADS=str(torch.get_num_threads())).items()
            if k not in RENDEZVOUS
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    cache = pre / "dpo" / FILE_NAME
    assert "computed in" in done.stdout and str(cache) in done.stdout
    assert not (pre / "dpo" / "metrics.jsonl").exists() and not (pre / "dpo" / ".lock").exists()
    written = cache.stat().st_mtime_ns

    capfd.readouterr()
    trainer, _ = run_stage(corpus_dir, pre, "dpo", f"init_from={sft_final}", "trainer.max_steps=2")
    assert f"read from {cache}" in capfd.readouterr().out  # not "computed in ... written to"
    assert cache.stat().st_mtime_ns == written
    assert trainer.stage.reference is None and trainer.stage.cached  # no reference model was kept

    own = tmp_path / "own"
    run_stage(
        corpus_dir,
        own,
        "dpo",
        f"init_from={sft_final}",
        "trainer.max_steps=2",
        "stage.cache_reference=always",
    )
    saved = {
        name: torch.load(d / "dpo" / FILE_NAME, weights_only=True) for name, d in (("pre", pre), ("own", own))
    }
    assert saved["pre"]["key"] == saved["own"]["key"]
    assert saved["pre"]["tables"] == saved["own"]["tables"]  # the same values, bit for bit
    assert len(saved["pre"]["tables"]["train"]) > 0 and len(saved["pre"]["tables"]["dev"]) > 0
    records = {name: _train_records(d / "dpo") for name, d in (("pre", pre), ("own", own))}
    assert [r["step"] for r in records["pre"]] == [1, 2]
    for a, b in zip(records["pre"], records["own"], strict=True):
        for key in ("loss", "rewards/margins", "logps/chosen", "grad_norm"):
            assert a[key] == b[key], key


def test_precompute_refuses_a_stale_cache_and_other_stages(corpus_dir, sft_final, tmp_path):
    from lalm.training.exits import EXIT_CONFIG, TrainingExit
    from scripts.precompute_reference import precompute

    out = tmp_path / "run"
    precompute(compose_train(*_overrides(corpus_dir, out, sft_final)))
    cache = out / "dpo" / FILE_NAME
    before = cache.read_bytes()
    with pytest.raises(TrainingExit) as err:
        precompute(compose_train(*_overrides(corpus_dir, out, sft_final, "data.max_length=1000")))
    assert err.value.code == EXIT_CONFIG and "max_length: 1024 -> 1000" in err.value.message
    assert cache.read_bytes() == before  # refused, not overwritten
    with pytest.raises(TrainingExit) as err:
        precompute(compose_train("stage=sft", f"data.dir={corpus_dir}", f"output_dir={out}"))
    assert err.value.code == EXIT_CONFIG and "stage=dpo" in err.value.message
