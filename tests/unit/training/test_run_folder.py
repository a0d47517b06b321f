"""The run folder's lock, the resume decision and the logs on resume, by example (no model needed)."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import time
from pathlib import Path

import pytest

from lalm.training.checkpoint import COMPLETE, STATE_FILE, list_checkpoints, prune
from lalm.training.run_folder import (
    LOCK_STALE_S,
    RunFolderError,
    RunLock,
    config_differences,
    data_fingerprint,
    plan_resume,
    prepare_logs,
)

CONFIG = {
    "optim": {"lr": 0.001, "betas": [0.9, 0.98]},
    "trainer": {"max_steps": 10, "seed": 0},
    "resume": "auto",
}


def _checkpoint(run_dir: Path, step: int, complete: bool = True, config: dict | None = None) -> Path:
    path = run_dir / "checkpoints" / f"step-{step:07d}"
    path.mkdir(parents=True)
    (path / STATE_FILE).write_text(json.dumps({"config": config or CONFIG, "train_state": {"step": step}}))
    if complete:
        (path / COMPLETE).write_text("{}")
    return path


def test_config_differences_ignore_the_allowed_keys_and_name_the_others():
    changed = {
        **CONFIG,
        "trainer": {"max_steps": 99, "seed": 1},
        "optim": {"lr": 0.002, "betas": [0.9, 0.98]},
    }
    assert config_differences(CONFIG, changed) == ["optim.lr: 0.001 -> 0.002", "trainer.seed: 0 -> 1"]
    assert config_differences(CONFIG, {**CONFIG, "resume": "never"}) == []


def test_auto_starts_fresh_in_an_empty_folder(tmp_path):
    assert plan_resume(tmp_path / "pretrain", "auto", CONFIG).checkpoint is None


def test_auto_takes_the_newest_complete_checkpoint_and_names_the_incomplete_newer_one(tmp_path):
    _checkpoint(tmp_path, 2)
    newest = _checkpoint(tmp_path, 4)
    broken = _checkpoint(tmp_path, 6, complete=False)
    plan = plan_resume(tmp_path, "auto", CONFIG)
    assert plan.checkpoint == str(newest)
    assert any(str(broken) in note and "incomplete" in note for note in plan.notes)


def test_a_config_change_outside_the_allow_list_is_refused_with_the_keys(tmp_path):
    _checkpoint(tmp_path, 2)
    with pytest.raises(RunFolderError, match=r"optim\.lr: 0\.001 -> 0\.5"):
        plan_resume(tmp_path, "auto", {**CONFIG, "optim": {"lr": 0.5, "betas": [0.9, 0.98]}})


def test_never_refuses_a_folder_with_a_run_and_accepts_an_empty_one(tmp_path):
    assert plan_resume(tmp_path, "never", CONFIG).checkpoint is None
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(RunFolderError, match="already holds a run"):
        plan_resume(tmp_path, "never", CONFIG)


def test_an_explicit_path_must_be_a_complete_checkpoint(tmp_path):
    incomplete = _checkpoint(tmp_path, 3, complete=False)
    with pytest.raises(Exception, match="no COMPLETE marker"):
        plan_resume(tmp_path, str(incomplete), CONFIG)
    complete = _checkpoint(tmp_path, 5)
    assert plan_resume(tmp_path, str(complete), CONFIG).checkpoint == str(complete)


def test_resume_keeps_log_records_up_to_the_step_and_fresh_starts_keep_old_logs_aside(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (1, 2, 2, 3, 4)))
    prepare_logs(tmp_path, 2)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 2]
    _checkpoint(tmp_path, 7, complete=False)
    prepare_logs(tmp_path, 0)
    assert not log.exists() and len(list(tmp_path.glob("metrics.*.jsonl"))) == 1
    assert list_checkpoints(tmp_path / "checkpoints") == []


def test_prune_keeps_the_last_k_complete_and_never_a_newer_incomplete_one(tmp_path):
    for step in (1, 2, 3):
        _checkpoint(tmp_path, step)
    _checkpoint(tmp_path, 4, complete=False)  # a save in progress or killed: not ours to delete
    prune(tmp_path / "checkpoints", keep_last=2)
    assert [(i.step, i.complete) for i in list_checkpoints(tmp_path / "checkpoints")] == [
        (2, True),
        (3, True),
        (4, False),
    ]


def _dead_pid() -> int:
    process = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(0,))
    process.start()
    process.join()
    return int(process.pid or 0)


def test_lock_refuses_a_live_holder_with_its_host_and_pid(tmp_path):
    holder = RunLock(tmp_path)
    holder.acquire()
    with pytest.raises(RunFolderError, match=rf"host {socket.gethostname()}, pid {os.getpid()}"):
        RunLock(tmp_path).acquire()
    holder.release()
    assert not (tmp_path / ".lock").exists()
    RunLock(tmp_path).acquire()


@pytest.mark.parametrize(
    ("holder", "age", "stale"),
    [
        ({"host": socket.gethostname(), "pid": "dead"}, 0, True),
        ({"host": "other-node", "pid": 1}, 10, False),
        ({"host": "other-node", "pid": 1}, LOCK_STALE_S + 60, True),
        ({"host": "other-node", "pid": 1, "slurm_job_id": "77"}, 10, True),  # this job, requeued
    ],
)
def test_lock_detects_a_stale_holder(tmp_path, monkeypatch, holder, age, stale):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    holder = {**holder, "pid": _dead_pid() if holder["pid"] == "dead" else holder["pid"]}
    lock = tmp_path / ".lock"
    lock.write_text(json.dumps(holder))
    os.utime(lock, (time.time() - age, time.time() - age))
    if stale:
        taker = RunLock(tmp_path)
        taker.acquire()
        assert taker.note is not None and "stale lock" in taker.note
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    else:
        with pytest.raises(RunFolderError, match="other-node"):
            RunLock(tmp_path).acquire()


def test_a_train_manifest_with_another_number_of_examples_is_refused(tmp_path):
    manifest = tmp_path / "train.jsonl"
    manifest.write_text('{"id": 1}\n{"id": 2}\n')
    saved = data_fingerprint(manifest, 2)
    checkpoint = _checkpoint(tmp_path / "run", 2)
    state = json.loads((checkpoint / STATE_FILE).read_text())
    (checkpoint / STATE_FILE).write_text(json.dumps({**state, "data_fingerprint": saved}))
    assert plan_resume(tmp_path / "run", "auto", CONFIG, saved).checkpoint == str(checkpoint)
    manifest.write_text('{"id": 1}\n{"id": 2}\n{"id": 3}\n')
    with pytest.raises(RunFolderError, match="now has 3 examples, the checkpoint's run had 2"):
        plan_resume(tmp_path / "run", "auto", CONFIG, data_fingerprint(manifest, 3))
