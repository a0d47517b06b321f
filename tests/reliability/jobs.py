"""Launch real training jobs (torchrun, 2 gloo ranks) and do to them what clusters do: kill every
process, signal the launcher alone, kill it alone, wait for a step."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.torchrun import ROOT, TRAIN, cpu_env, torchrun_command

COMMON = ["trainer=smoke", "model.vocab_size=2000", "trainer.eval_every=0"]


@dataclass
class Job:
    process: subprocess.Popen
    log: Path

    def wait(self, timeout: float = 300) -> int:
        return self.process.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def workers(self) -> list[psutil.Process]:
        """Every live process below the launcher (workers and their data loader processes)."""
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def kill_all(self) -> None:
        """SIGKILL the whole job at once, as a node failure or `scancel` after KillWait does."""
        victims = [*self.workers(), psutil.Process(self.process.pid)]
        for proc in victims:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                continue
        psutil.wait_procs(victims, timeout=30)
        self.process.wait(timeout=30)


def launch(
    nproc: int,
    *overrides: str,
    log: Path,
    faults: str = "",
    launcher: str = "torch.distributed.run",
    env: dict[str, str] | None = None,
) -> Job:
    """Start `<launcher> --nproc_per_node=N scripts/train.py overrides...` in the background."""
    command = torchrun_command(nproc, TRAIN, *COMMON, *overrides, launcher=launcher)
    environment = cpu_env(**(env or {}))
    environment.pop("LALM_FAULTS", None)
    if faults:
        environment["LALM_FAULTS"] = faults
    handle = log.open("w")
    process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=environment, cwd=ROOT)
    return Job(process, log)


def run(nproc: int, *overrides: str, log: Path, faults: str = "", timeout: float = 300) -> Job:
    """Launch and wait; the job must succeed."""
    job = launch(nproc, *overrides, log=log, faults=faults)
    code = job.wait(timeout)
    assert code == 0, f"exit {code}\n{job.output()[-6000:]}"
    return job


def train_records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if '"lr"' in line]


def losses(run_dir: Path) -> dict[int, float]:
    return {record["step"]: record["loss"] for record in train_records(run_dir)}


def wait_for(condition, what: str, job: Job, timeout: float = 240) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        if job.process.poll() is not None:
            raise AssertionError(
                f"the job ended (exit {job.process.returncode}) before {what}\n{job.output()[-4000:]}"
            )
        if time.monotonic() > deadline:
            job.kill_all()
            raise AssertionError(f"timed out waiting for {what}\n{job.output()[-4000:]}")
        time.sleep(0.1)


def complete(run_dir: Path, step: int) -> bool:
    return (run_dir / "checkpoints" / f"step-{step:07d}" / "COMPLETE").is_file()


def logged(run_dir: Path, step: int) -> bool:
    path = run_dir / "metrics.jsonl"
    return path.is_file() and f'"step": {step},' in path.read_text()


def signal_launcher(job: Job, signum: int) -> None:
    os.kill(job.process.pid, signum)


def no_orphans_left(pids: list[int], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in pids):
            return True
        time.sleep(0.2)
    return False
