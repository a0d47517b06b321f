"""Atomic checkpoints: a kill during a save leaves the previous checkpoint usable; a failed write says
so and names the path; only the last K complete checkpoints are kept."""

from __future__ import annotations

from lalm.training.exits import EXIT_CONFIG, EXIT_LOCKED
from tests.reliability import jobs

ARGS = ["stage=pretrain", "deepspeed=zero2", "trainer.max_steps=6", "trainer.save_every=2"]


def _killed_in_save(fault: str, corpus_dir, tmp_path):  # noqa: ANN001, ANN202
    output = tmp_path / "run"
    run_dir = output / "pretrain"
    job = jobs.launch(
        2, *ARGS, f"data.dir={corpus_dir}", f"output_dir={output}", log=tmp_path / "a.log", faults=fault
    )
    assert job.wait(300) != 0
    assert jobs.complete(run_dir, 2) and not jobs.complete(run_dir, 4)
    resumed = jobs.run(2, *ARGS, f"data.dir={corpus_dir}", f"output_dir={output}", log=tmp_path / "b.log")
    assert f"resuming from {run_dir / 'checkpoints' / 'step-0000002'}" in resumed.output()
    assert [r["step"] for r in jobs.train_records(run_dir)] == [1, 2, 3, 4, 5, 6]
    assert (run_dir / "final" / "model.safetensors").is_file()
    return run_dir, resumed


def test_kill_while_deepspeed_writes_resumes_from_the_previous_checkpoint(corpus_dir, tmp_path):
    run_dir, _ = _killed_in_save("kill_save@4:0", corpus_dir, tmp_path)
    kept = sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert kept == ["step-0000004", "step-0000006"]  # keep_last=2, the leftover temporary folder is gone


def test_kill_before_the_marker_skips_the_incomplete_folder_and_says_so(corpus_dir, tmp_path):
    run_dir, resumed = _killed_in_save("kill_marker@4:0", corpus_dir, tmp_path)
    incomplete = run_dir / "checkpoints" / "step-0000004"
    assert f"skipping incomplete checkpoint {incomplete}" in resumed.output()


def test_a_failed_write_names_the_path_and_stops(corpus_dir, tmp_path):
    output = tmp_path / "run"
    job = jobs.launch(
        2, *ARGS, f"data.dir={corpus_dir}", f"output_dir={output}", log=tmp_path / "a.log", faults="enospc@2"
    )
    assert job.wait(300) != 0
    text = job.output()
    assert "could not write checkpoint" in text and "No space left on device" in text
    assert str(output / "pretrain" / "checkpoints" / ".tmp-step-0000002") in text
    assert not jobs.complete(output / "pretrain", 2)


def test_keep_last_keeps_only_the_newest_complete_checkpoints(corpus_dir, tmp_path):
    output = tmp_path / "run"
    jobs.run(
        2,
        *ARGS,
        "trainer.save_every=1",
        "trainer.keep_last=3",
        f"data.dir={corpus_dir}",
        f"output_dir={output}",
        log=tmp_path / "a.log",
    )
    kept = sorted(p.name for p in (output / "pretrain" / "checkpoints").iterdir() if p.is_dir())
    assert kept == ["step-0000004", "step-0000005", "step-0000006"]


def test_a_second_job_into_a_running_folder_fails_at_once(corpus_dir, tmp_path):
    output = tmp_path / "run"
    first = jobs.launch(
        2, *ARGS, f"data.dir={corpus_dir}", f"output_dir={output}", log=tmp_path / "a.log", faults="sleep@2"
    )
    jobs.wait_for(lambda: jobs.logged(output / "pretrain", 1), "step 1", first)
    second = jobs.launch(
        2,
        *ARGS,
        f"data.dir={corpus_dir}",
        f"output_dir={output}",
        log=tmp_path / "b.log",
        launcher="lalm.launch",
    )
    assert second.wait(120) == EXIT_LOCKED
    assert "is in use by another job" in second.output() and "pid" in second.output()
    first.kill_all()
    # The first job died without releasing its lock: a new job sees the holder is gone and takes over.
    third = jobs.run(2, *ARGS, f"data.dir={corpus_dir}", f"output_dir={output}", log=tmp_path / "c.log")
    assert "taking over the stale lock" in third.output()


def test_resume_never_refuses_a_used_folder_and_a_changed_config_is_refused(corpus_dir, tmp_path):
    output = tmp_path / "run"
    base = [*ARGS, "trainer.max_steps=2", f"data.dir={corpus_dir}", f"output_dir={output}"]
    jobs.run(2, *base, log=tmp_path / "a.log")
    never = jobs.launch(2, *base, "resume=never", log=tmp_path / "b.log", launcher="lalm.launch")
    assert never.wait(120) == EXIT_CONFIG
    assert "resume=never" in never.output() and "already holds a run" in never.output()
    changed = jobs.launch(
        2, *base, "optim.lr=0.5", "trainer.max_steps=3", log=tmp_path / "c.log", launcher="lalm.launch"
    )
    assert changed.wait(120) == EXIT_CONFIG
    assert "optim.lr: 0.0001 -> 0.5" in changed.output()
    # An allowed change (a longer run) continues from the step-2 checkpoint.
    longer = jobs.run(2, *base, "trainer.max_steps=3", log=tmp_path / "d.log")
    assert "resuming from" in longer.output()
    assert [r["step"] for r in jobs.train_records(output / "pretrain")] == [1, 2, 3]
