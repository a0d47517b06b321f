"""Exact resume: SIGKILL every process of a 2-rank job after a checkpoint, rerun the same command, and
every loss from the resume point on is bitwise equal to an uninterrupted run's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability import jobs

STEPS = ["trainer.max_steps=4", "trainer.save_every=2", "data.length_groups=2"]
CACHED_PACKED = ("stage.cache_reference=always", "data.packing=always")
CASES = [
    ("pretrain", "zero2", 0, ()),
    ("pretrain", "zero3", 0, ()),
    ("sft", "zero2", 0, ()),
    ("sft", "zero3", 0, ()),
    ("dpo", "zero2", 0, ()),
    ("dpo", "zero3", 0, ()),
    ("pretrain", "zero2", 2, ()),  # DataLoader worker processes: the data position must still seek
    ("sft", "zero2", 2, ("data.packing=always",)),  # packed micro-batches
    ("dpo", "zero3", 2, CACHED_PACKED),  # the reference cache is read back, not recomputed
]


def _args(stage: str, zero: str, workers: int, corpus: Path, sft_final: Path, extra: tuple = ()) -> list[str]:
    args = [
        f"stage={stage}",
        f"deepspeed={zero}",
        f"data.dir={corpus}",
        f"data.num_workers={workers}",
        *extra,
    ]
    if stage == "pretrain":
        args.append("stage.ctc_weight=0.5")  # the auxiliary head's weights and moments resume too
    return [*args, *STEPS, *([f"init_from={sft_final}"] if stage == "dpo" else [])]


@pytest.mark.parametrize(("stage", "zero", "workers", "extra"), CASES)
def test_kill_every_process_then_resume_is_bitwise_exact(
    stage, zero, workers, extra, corpus_dir, sft_final, tmp_path
):
    args = _args(stage, zero, workers, corpus_dir, sft_final, extra)
    reference = tmp_path / "reference"
    jobs.run(2, *args, f"output_dir={reference}", log=tmp_path / "reference.log")

    output = tmp_path / "interrupted"
    run_dir = output / stage
    job = jobs.launch(2, *args, f"output_dir={output}", log=tmp_path / "killed.log", faults="sleep@3")
    jobs.wait_for(lambda: jobs.complete(run_dir, 2), "the step-2 checkpoint", job)
    job.kill_all()
    assert not (run_dir / "final").exists()
    resumed = jobs.run(2, *args, f"output_dir={output}", log=tmp_path / "resumed.log")
    assert f"resuming from {run_dir / 'checkpoints' / 'step-0000002'}" in resumed.output()
    if "stage.cache_reference=always" in extra:
        assert "reference log-probs" in resumed.output() and "read from" in resumed.output()

    expected, got = jobs.losses(reference / stage), jobs.losses(run_dir)
    assert [r["step"] for r in jobs.train_records(run_dir)] == [1, 2, 3, 4]  # one log, no repeats
    assert got == expected  # bitwise: float equality, not approx
    assert (run_dir / "final" / "model.safetensors").is_file()
