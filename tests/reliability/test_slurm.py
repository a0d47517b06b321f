"""scripts/slurm/train.sbatch on this machine: SLURM's own commands are not installed here, so `srun`
and `scontrol` are small stand-ins on PATH (srun runs its command once, as on a single node; scontrol
names this host and records a requeue). Everything else is the real script, launcher and trainer."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.reliability import jobs

SRUN = """#!/bin/bash
while [[ "$1" == --* ]]; do shift; done
exec "$@"
"""
SCONTROL = """#!/bin/bash
if [ "$1" = show ]; then echo localhost; else echo "$@" >> "$SCONTROL_LOG"; fi
"""


def _stand_ins(folder: Path) -> None:
    folder.mkdir()
    for name, text in (("srun", SRUN), ("scontrol", SCONTROL)):
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_usr1_before_the_time_limit_saves_and_requeues_then_the_requeued_job_finishes(corpus_dir, tmp_path):
    _stand_ins(tmp_path / "bin")
    output = tmp_path / "run"
    env = {
        **os.environ,
        "PATH": f"{tmp_path / 'bin'}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NODELIST": "localhost",
        "SLURM_JOB_NUM_NODES": "1",
        "GPUS_PER_NODE": "2",
        "MASTER_PORT": str(_free_port()),
        "SCONTROL_LOG": str(tmp_path / "scontrol.log"),
        "DS_ACCELERATOR": "cpu",
        "OMP_NUM_THREADS": "1",
        "LALM_FAULTS": "sleep@3",
    }
    args = [
        *jobs.COMMON,
        "stage=pretrain",
        "trainer.max_steps=4",
        f"data.dir={corpus_dir}",
        f"output_dir={output}",
    ]
    script = str(jobs.ROOT / "scripts" / "slurm" / "train.sbatch")
    with (tmp_path / "job.log").open("w") as log:
        batch = subprocess.Popen(
            ["bash", script, *args], cwd=jobs.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        job = jobs.Job(batch, tmp_path / "job.log")
        jobs.wait_for(lambda: jobs.logged(output / "pretrain", 2), "step 2", job)
        batch.send_signal(signal.SIGUSR1)  # what --signal=B:USR1@120 does
        assert batch.wait(180) == 0, job.output()[-4000:]
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    assert jobs.complete(output / "pretrain", 3)
    # The requeued job: same script, same arguments (SLURM reruns it); it continues and finishes.
    env.pop("LALM_FAULTS")
    env["SLURM_RESTART_COUNT"] = "1"
    again = subprocess.run(
        ["bash", script, *args], cwd=jobs.ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    assert "resuming from" in again.stdout + again.stderr
    assert [r["step"] for r in jobs.train_records(output / "pretrain")] == [1, 2, 3, 4]
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]  # not requeued again
