"""TrainState: the one seam a resumed run's counters go through; strict JSON logs; fault specs."""

from __future__ import annotations

import json

import pytest

from lalm.config.train import WandbConfig
from lalm.training import faults
from lalm.training.checkpoint import _swap_in
from lalm.training.logging import MetricsLogger
from lalm.training.state import TrainState


def test_advance_counts_steps_units_drops_and_skips():
    state = TrainState()
    state.advance({"units": 10.0, "examples": 4.0, "dropped/empty_audio": 1.0, "loss": 3.0}, applied=True)
    state.advance(
        {"units": 8.0, "examples": 3.0, "dropped/empty_audio": 2.0, "dropped/x": 0.0}, applied=False
    )
    state.advance({"units": 8.0, "examples": 3.0}, applied=False)
    assert (state.step, state.units_seen, state.examples_seen) == (3, 26.0, 10)
    assert state.dropped == {"empty_audio": 3}
    assert (state.skipped_steps, state.consecutive_skips) == (2, 2)
    state.advance({"units": 1.0, "examples": 1.0}, applied=True)
    assert state.consecutive_skips == 0


def test_state_dict_round_trips_through_json():
    state = TrainState(step=7, units_seen=3.5, dropped={"a": 1}, bad_ids=["u1"], skipped_steps=1)
    state.add_bad(["u1", "u2", "u2"])
    restored = TrainState()
    restored.load_state_dict(json.loads(json.dumps(state.state_dict())))
    assert restored == state and restored.bad_ids == ["u1", "u2"]


def test_metrics_are_strict_json(tmp_path):
    logger = MetricsLogger(tmp_path, 3, 0, WandbConfig(mode="disabled"), {}, enabled=True, progress_bar=False)
    logger.log({"step": 1, "loss": float("nan"), "grad_norm": float("inf"), "lr": 0.1})
    logger.log_lines("bad_examples.jsonl", [{"step": 1, "id": "ü", "detail": float("-inf")}])
    logger.close()
    record = json.loads((tmp_path / "metrics.jsonl").read_text(), parse_constant=pytest.fail)
    assert record == {"step": 1, "loss": None, "grad_norm": None, "lr": 0.1}
    assert json.loads((tmp_path / "bad_examples.jsonl").read_text())["detail"] is None


def test_swap_in_replaces_final_and_leaves_no_temporary_folder(tmp_path):
    final, tmp = tmp_path / "final", tmp_path / "final.tmp"
    final.mkdir()
    (final / "old").write_text("1")
    tmp.mkdir()
    (tmp / "new").write_text("2")
    _swap_in(tmp, final)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]
    assert [p.name for p in final.iterdir()] == ["new"]
    tmp.mkdir()
    _swap_in(tmp, tmp_path / "first")  # nothing to swap with: a plain rename
    assert (tmp_path / "first").is_dir()


def test_fault_specs_fire_only_where_asked(monkeypatch):
    monkeypatch.setenv("LALM_FAULTS", "nan_loss@2:1,nan_loss@3")
    assert not faults.loss_is_poisoned(2)  # rank 0 here (no process group)
    assert faults.loss_is_poisoned(3)
    monkeypatch.setenv("LALM_FAULTS", "explode@2")
    with pytest.raises(ValueError, match="cannot read 'explode@2'"):
        faults.loss_is_poisoned(2)
    monkeypatch.setenv("LALM_FAULTS", "enospc@4")
    with pytest.raises(OSError, match="No space left"):
        faults.at("save", 4)
    faults.at("save", 5)


def test_a_resumed_run_continues_the_same_wandb_run(tmp_path):
    def start(step: int) -> str:
        logger = MetricsLogger(
            tmp_path, 3, step, WandbConfig(mode="offline"), {}, enabled=True, progress_bar=False
        )
        run_id = logger._wandb.id  # type: ignore[union-attr]
        logger.close()
        return str(run_id)

    first = start(0)
    assert start(2) == first  # resumed
    assert start(0) != first  # a fresh start is a new wandb run
