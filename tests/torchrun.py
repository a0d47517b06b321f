"""How the tests start a multi-process job: torchrun on CPU (gloo), one thread per rank."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(ROOT / "scripts" / "train.py")


def torchrun_command(
    nproc: int, script: str, *args: str, launcher: str = "torch.distributed.run"
) -> list[str]:
    return [sys.executable, "-m", launcher, f"--nproc_per_node={nproc}", "--standalone", script, *args]


def cpu_env(**extra: str) -> dict[str, str]:
    """This process's environment for a job on CPU: DeepSpeed's CPU accelerator, 1 thread per rank."""
    return {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", **extra}
