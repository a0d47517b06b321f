"""The non-finite guard and the step watchdog, on 2 real ranks."""

from __future__ import annotations

import json
import re

import torch

from lalm.training.exits import EXIT_DIVERGED, EXIT_HANG
from tests.reliability import jobs

ARGS = [
    "stage=pretrain",
    "deepspeed=zero2",
    "trainer.max_steps=3",
    "trainer.save_every=1",
    "trainer.keep_last=3",
]


def _strict(line: str) -> dict:
    def refuse(name: str) -> None:
        raise AssertionError(f"not JSON: {name} in {line}")

    return json.loads(line, parse_constant=refuse)


def _states(checkpoint) -> list:  # noqa: ANN001
    """The model weights and each rank's optimizer partition (fp32 master weights, Adam moments and
    step counts) of a ZeRO-2 checkpoint: what an update changes, without the step bookkeeping."""
    model = torch.load(checkpoint / "mp_rank_00_model_states.pt", weights_only=False)["module"]
    parts = []
    for path in sorted(checkpoint.glob("zero_pp_rank_*_optim_states.pt")):
        optim = torch.load(path, weights_only=False)["optimizer_state_dict"]
        parts.append((optim["single_partition_of_fp32_groups"], optim["base_optimizer_state"]["state"]))
    assert len(parts) == 2
    return [model, parts]


def _equal(a, b) -> bool:  # noqa: ANN001
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_nan_on_one_rank_is_skipped_by_both_and_changes_nothing(corpus_dir, tmp_path):
    reference = tmp_path / "reference"
    jobs.run(2, *ARGS, f"data.dir={corpus_dir}", f"output_dir={reference}", log=tmp_path / "r.log")
    output = tmp_path / "run"
    jobs.run(
        2,
        *ARGS,
        f"data.dir={corpus_dir}",
        f"output_dir={output}",
        log=tmp_path / "a.log",
        faults="nan_loss@2:1",
    )
    run_dir = output / "pretrain"
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    records = {r["step"]: r for r in map(_strict, lines) if "lr" in r}
    assert records[2]["skipped"] is True and records[2]["loss"] is None and records[2]["grad_norm"] is None
    assert records[1]["skipped"] is False and records[3]["skipped"] is False
    # Both ranks skipped: neither the weights nor either rank's optimizer partition moved in step 2.
    checkpoints = run_dir / "checkpoints"
    assert _equal(_states(checkpoints / "step-0000001"), _states(checkpoints / "step-0000002"))
    assert not _equal(_states(checkpoints / "step-0000002"), _states(checkpoints / "step-0000003"))
    # The LR schedule stayed aligned: step 3 uses the rate the uninterrupted run used at step 3.
    expected = {r["step"]: r for r in jobs.train_records(reference / "pretrain")}
    assert records[3]["lr"] == expected[3]["lr"]
    state = json.loads((checkpoints / "step-0000003" / "lalm_state.json").read_text())
    assert state["train_state"]["skipped_steps"] == 1
    assert (run_dir / "final").is_dir()


def test_a_diverged_run_exits_non_zero_without_a_final_model(corpus_dir, tmp_path):
    output = tmp_path / "run"
    job = jobs.launch(
        2,
        "stage=pretrain",
        "optim.lr=1e6",
        "trainer.max_steps=12",
        "trainer.max_consecutive_skips=3",
        f"data.dir={corpus_dir}",
        f"output_dir={output}",
        log=tmp_path / "a.log",
        launcher="lalm.launch",
    )
    assert job.wait(300) == EXIT_DIVERGED, job.output()[-3000:]
    assert "training diverged" in job.output()
    assert not (output / "pretrain" / "final").exists()
    for line in (output / "pretrain" / "metrics.jsonl").read_text().splitlines():
        _strict(line)


def test_a_stuck_rank_becomes_an_error_naming_rank_and_step(corpus_dir, tmp_path):
    output = tmp_path / "run"
    job = jobs.launch(
        2,
        "stage=pretrain",
        "trainer.step_timeout_s=4",
        f"data.dir={corpus_dir}",
        f"output_dir={output}",
        log=tmp_path / "a.log",
        faults="hang@2:1",
        launcher="lalm.launch",
    )
    assert job.wait(180) == EXIT_HANG, job.output()[-3000:]
    # Rank 1 hangs; rank 0 waits for it in a collective: whichever watchdog fires first names itself.
    assert re.search(r"lalm watchdog: rank [01] stuck for \d+ s in .+ of step 2 ", job.output())
