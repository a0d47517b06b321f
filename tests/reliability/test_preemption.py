"""Preemption: a signal only sets a flag; at the next step boundary the ranks agree, every rank saves,
and the job exits with EXIT_REQUEUE; the launcher's death stops the workers instead of orphaning them."""

from __future__ import annotations

import os
import signal

import psutil

from lalm.training.exits import EXIT_REQUEUE
from tests.reliability import jobs

ARGS = ["stage=pretrain", "deepspeed=zero2", "trainer.max_steps=5"]


def test_sigusr1_seen_by_one_rank_saves_on_all_and_resume_matches(corpus_dir, tmp_path):
    args = [*ARGS, f"data.dir={corpus_dir}"]
    reference = tmp_path / "reference"
    jobs.run(2, *args, f"output_dir={reference}", log=tmp_path / "reference.log")
    output = tmp_path / "preempted"
    run_dir = output / "pretrain"
    # Rank 1 alone receives SIGUSR1 at step 3: rank 0 must learn of it through the step's all-reduce.
    job = jobs.launch(
        2,
        *args,
        f"output_dir={output}",
        log=tmp_path / "job.log",
        faults="sigusr1@3:1",
        launcher="lalm.launch",
    )
    assert job.wait(300) == EXIT_REQUEUE, job.output()[-4000:]
    assert "stop requested (SIGUSR1" in job.output() or "stop requested (on another rank" in job.output()
    assert jobs.complete(run_dir, 3) and not (run_dir / "final").exists()
    assert max(jobs.losses(run_dir)) == 3
    jobs.run(2, *args, f"output_dir={output}", log=tmp_path / "resumed.log")
    assert jobs.losses(run_dir) == jobs.losses(reference / "pretrain")


def test_sigusr1_to_the_launcher_reaches_the_workers(corpus_dir, tmp_path):
    output = tmp_path / "run"
    job = jobs.launch(
        2,
        *ARGS,
        f"data.dir={corpus_dir}",
        f"output_dir={output}",
        log=tmp_path / "job.log",
        faults="sleep@3",
        launcher="lalm.launch",
    )
    jobs.wait_for(lambda: jobs.logged(output / "pretrain", 2), "step 2", job)
    jobs.signal_launcher(job, signal.SIGUSR1)
    assert job.wait(120) == EXIT_REQUEUE, job.output()[-4000:]
    assert jobs.complete(output / "pretrain", 3)


def test_sigterm_to_torchrun_saves_and_stops(corpus_dir, tmp_path):
    """torchrun forwards SIGTERM to its workers (and kills them 30 s later): they save first."""
    output = tmp_path / "run"
    job = jobs.launch(
        2, *ARGS, f"data.dir={corpus_dir}", f"output_dir={output}", log=tmp_path / "job.log", faults="sleep@3"
    )
    jobs.wait_for(lambda: jobs.logged(output / "pretrain", 2), "step 2", job)
    jobs.signal_launcher(job, signal.SIGTERM)
    assert job.wait(120) != 0
    assert jobs.complete(output / "pretrain", 3)
    assert not (output / "pretrain" / "final").exists()


def _launcher_dies(corpus_dir, tmp_path, signum: int) -> None:
    output = tmp_path / "run"
    job = jobs.launch(
        2, *ARGS, f"data.dir={corpus_dir}", f"output_dir={output}", log=tmp_path / "job.log", faults="sleep@3"
    )
    jobs.wait_for(lambda: jobs.logged(output / "pretrain", 2), "step 2", job)
    workers = [proc.pid for proc in job.workers()]
    assert len(workers) >= 2
    os.kill(job.process.pid, signum)  # torchrun alone: its workers live in their own sessions
    job.process.wait(30)
    # The orphans notice (PR_SET_PDEATHSIG / parent pid), save at the step boundary and exit.
    assert jobs.no_orphans_left(workers), [
        psutil.Process(p).cmdline() for p in workers if psutil.pid_exists(p)
    ]
    assert jobs.complete(output / "pretrain", 3)
    assert not (output / "pretrain" / "final").exists()


def test_kill_9_of_torchrun_alone_leaves_no_orphans(corpus_dir, tmp_path):
    _launcher_dies(corpus_dir, tmp_path, signal.SIGKILL)


def test_sigusr1_to_plain_torchrun_leaves_no_orphans(corpus_dir, tmp_path):
    _launcher_dies(corpus_dir, tmp_path, signal.SIGUSR1)
