"""scripts/train.py refuses bad input with one clear error, before any model is built."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.unit.scripts import run_script


def _train(*overrides: str) -> subprocess.CompletedProcess:
    env = {"DS_ACCELERATOR": "cpu", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    return run_script("train.py", *overrides, env=env)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["stage=dpo"], "stage=dpo needs init_from"),
        (["stage=sft", "init_from=/nonexistent/sft/final"], "is not a model checkpoint"),
        (
            ["trainer.micro_batch_size=3", "trainer.global_batch_size=8"],
            "is not a multiple of micro_batch_size",
        ),
        (["stage=banana"], "stage"),
        (["trainer.max_stepz=3"], "max_stepz"),
    ],
)
def test_bad_input_fails_before_any_model(corpus_dir, tmp_path, overrides, message):
    result = _train(f"data.dir={corpus_dir}", f"output_dir={tmp_path}", *overrides)
    assert result.returncode != 0
    assert message in result.stderr + result.stdout
    assert not list(tmp_path.rglob("*.safetensors")) and not list(tmp_path.rglob("metrics.jsonl"))
    assert (
        "Loading weights" not in result.stderr
        and "deepspeed_shm_comm_op" not in result.stdout + result.stderr
    )
