"""How scripts/bench_gpu.py runs one lalm job: scripts/train.py under torchrun (one process), in its
own process group, with a deadline; what it measured, read back from the run's metrics.jsonl.

A job that fails does not stop the benchmark: its row says "OOM" (CUDA out of memory anywhere in its
log), "timeout", "failed (exit N)" or why it was skipped, with the end of its log.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(ROOT / "scripts" / "train.py")
# A parent that ran a job in-process (the tests) leaves its rendezvous behind; torchrun sets its own.
RENDEZVOUS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
OOM_MARKS = ("OutOfMemoryError", "CUDA out of memory", "CUDA error: out of memory")
POLL_S = 0.5


@dataclass
class Job:
    """One training run of the benchmark. `keep_final`: its final/ is another job's init_from, so it
    runs to the end; otherwise it is stopped once its last step is logged (the export of final/ is
    not part of what is measured and costs ~30 s at 7B)."""

    name: str
    section: str  # dpo | sft | 7b
    stage: str  # sft | dpo
    overrides: list[str]
    max_steps: int
    cap_s: float  # this job's own time limit
    init_from: str | None = None  # the name of the job whose final/ this one starts from
    keep_final: bool = False
    labels: dict[str, Any] = field(default_factory=dict)  # combination, workload: for the table
    rows_per_step: int = 0  # the global batch: rows (SFT) or pairs (DPO)


def _command(job: Job, overrides: list[str]) -> list[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", "--standalone"]
    return [*launcher, TRAIN, f"stage={job.stage}", *overrides]


def _environment(cpu: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in RENDEZVOUS}
    env |= {"PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    if cpu:
        env |= {"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1")}
    else:
        env.pop("DS_ACCELERATOR", None)
    return env


def train_records(run_dir: Path) -> list[dict[str, Any]]:
    """The training records (not evaluation) of <run>/metrics.jsonl, in order; [] before the first."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # the last line while it is being written
            break
    return [r for r in records if "lr" in r]


def _stop(process: subprocess.Popen) -> None:
    """SIGKILL the job's whole process group (torchrun and its worker): SIGTERM would make the trainer
    save a preemption checkpoint first."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _wait(process: subprocess.Popen, job: Job, run_dir: Path, deadline: float) -> str | None:
    """Until the job ends, logs its last step (when nothing needs its final/), or passes the deadline;
    None when it ran through, else why it was stopped."""
    while process.poll() is None:
        if time.monotonic() > deadline:
            _stop(process)
            return "timeout"
        if not job.keep_final:
            records = train_records(run_dir)
            if records and records[-1]["step"] >= job.max_steps:
                _stop(process)
                return "stopped after the last step"
        time.sleep(POLL_S)
    return None


def _status(returncode: int, stopped: str | None, log: str) -> str:
    if any(mark in log for mark in OOM_MARKS):
        return "OOM"
    if stopped == "timeout":
        return "timeout"
    if stopped is None and returncode != 0:
        # torchrun exits 1 whatever its worker's code was; it prints the worker's ("exitcode  : 78").
        worker = re.findall(r"exitcode\s*:\s*(-?\d+)", log)
        return f"failed (exit {worker[-1] if worker else returncode})"
    return "ok"


def _first_error(log: str) -> str:
    """The job's own error (lalm's "error: ..." block, or the last exception line), not torchrun's."""
    lines = log.splitlines()
    for k, line in enumerate(lines):
        if line.startswith("error:") or ("lalm:" in line and "exit code" in line):
            return "\n".join(lines[k : k + 4])
    raised = [line for line in lines if "Error" in line and "ChildFailedError" not in line]
    return raised[-1] if raised else ""


def summarize(records: list[dict[str, Any]], warmup: int) -> dict[str, Any]:
    """Medians over the timed steps (after `warmup`) of what each record carries; peak memory is the
    highest over the run (GPU when the records have it, else host RSS)."""
    timed = [r for r in records if r["step"] > warmup] or records
    if not timed:
        return {}

    def median(key: str) -> float | None:
        values = [r[key] for r in timed if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        return statistics.median(values) if values else None

    gpu = any("gpu_peak_mb" in r for r in records)
    memory = "gpu_peak_mb" if gpu else "host_peak_mb"
    out = {key: median(key) for key in ("tokens_per_s", "wall_tokens_per_s", "mfu", "model_tflops_per_s")}
    out |= {key: median(key) for key in ("data_wait_fraction", "packing_efficiency", "tokens", "loss")}
    out["peak_mb"] = max(r[memory] for r in records if memory in r)
    out["memory"] = "gpu" if gpu else "host"
    out["timed_steps"] = len(timed)
    return out


def run_job(job: Job, overrides: list[str], out_dir: Path, deadline: float, cpu: bool) -> dict[str, Any]:
    """Run `job` (fresh: its output folder is emptied first); its table row."""
    output = out_dir / job.name
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    log_path = out_dir / f"{job.name}.log"
    command = _command(job, [*overrides, f"output_dir={output}"])
    start = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log:
        log.write(" ".join(command) + "\n")
        log.flush()
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_environment(cpu),
            cwd=ROOT,
            start_new_session=True,
        )
        try:
            stopped = _wait(process, job, output / job.stage, min(deadline, start + job.cap_s))
        except BaseException:
            _stop(process)
            raise
    text = log_path.read_text(encoding="utf-8", errors="replace")
    row: dict[str, Any] = {
        "status": _status(process.returncode, stopped, text),
        "seconds": time.monotonic() - start,
    }
    records = train_records(output / job.stage)
    row |= {"steps_logged": len(records), "log": str(log_path)}
    if row["status"] != "ok":
        row["error"] = _first_error(text)
        row["log_tail"] = text[-2000:]
    return row | {"records": records}
