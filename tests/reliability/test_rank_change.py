"""Resuming on another number of ranks (2 -> 1) through the trainer: the checkpoint is converted to
DeepSpeed's universal format on the way, and training continues with the same losses to float
tolerance (the gradient sums are ordered differently on one rank, so not bitwise)."""

from __future__ import annotations

import pytest

from tests.reliability import jobs


@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_a_two_rank_checkpoint_resumes_on_one_rank(zero, corpus_dir, tmp_path):
    args = [
        "stage=pretrain",
        "stage.ctc_weight=0.5",
        f"deepspeed={zero}",
        f"data.dir={corpus_dir}",
        "trainer.max_steps=4",
        "trainer.save_every=2",
        "data.length_groups=2",
    ]
    two = tmp_path / "two"
    jobs.run(2, *args, f"output_dir={two}", log=tmp_path / "two.log")
    checkpoint = two / "pretrain" / "checkpoints" / "step-0000002"
    one = tmp_path / "one"
    resumed = jobs.run(1, *args, f"output_dir={one}", f"resume={checkpoint}", log=tmp_path / "one.log")
    assert "converting it to a universal checkpoint" in resumed.output()
    expected, got = jobs.losses(two / "pretrain"), jobs.losses(one / "pretrain")
    assert sorted(got) == [3, 4]
    assert [got[3], got[4]] == pytest.approx([expected[3], expected[4]], rel=1e-5)
    records = {r["step"]: r for r in jobs.train_records(one / "pretrain")}
    assert records[3]["lr"] == pytest.approx(jobs.train_records(two / "pretrain")[2]["lr"])
