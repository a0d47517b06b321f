"""On a CUDA machine: every stage runs in bf16 with nccl (skipped where there is no GPU, as in CI)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
ROOT = Path(__file__).resolve().parents[2]


def test_chain_in_bf16_on_gpu(corpus_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DS_ACCELERATOR"}
    for stage, previous in (("pretrain", None), ("sft", "pretrain"), ("dpo", "sft")):
        init = [f"init_from={tmp_path}/{previous}/final"] if previous else []
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=1",
            str(ROOT / "scripts" / "train.py"),
            f"stage={stage}",
            f"data.dir={corpus_dir}",
            f"output_dir={tmp_path}",
            "trainer=smoke",
            "model.vocab_size=2000",
            *init,
        ]
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
        assert result.returncode == 0, result.stderr[-4000:]
        records = [json.loads(line) for line in (tmp_path / stage / "metrics.jsonl").read_text().splitlines()]
        assert all(math.isfinite(r["loss"]) for r in records if "lr" in r)
    config = json.loads((tmp_path / "dpo" / "final" / "config.json").read_text())
    assert "bfloat16" in json.dumps(config)
