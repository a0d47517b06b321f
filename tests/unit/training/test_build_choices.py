"""The build's automatic choices: DataLoader workers, packing, the DPO reference cache."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from lalm.training.build import resolve_workers, uses_packing
from lalm.training.reference_cache import FILE_NAME, uses_reference_cache


@pytest.mark.parametrize(
    ("cores", "ranks", "expected"), [(2, 2, 0), (2, 1, 1), (16, 1, 4), (16, 8, 1), (8, 2, 3)]
)
def test_automatic_workers_take_only_the_spare_cores(monkeypatch, cores, ranks, expected) -> None:  # noqa: ANN001
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(ranks))
    assert resolve_workers(-1) == expected
    assert resolve_workers(3) == 3


def _model(attention: str) -> SimpleNamespace:
    text = SimpleNamespace(_attn_implementation=attention)
    return SimpleNamespace(config=SimpleNamespace(get_text_config=lambda: text))


def test_packing_is_automatic_only_with_flash_attention() -> None:
    assert uses_packing("auto", _model("flash_attention_2"))
    assert not uses_packing("auto", _model("sdpa"))
    assert uses_packing("always", _model("sdpa")) and not uses_packing("never", _model("flash_attention_2"))


def test_the_cache_is_automatic_from_one_epoch_or_when_a_run_made_one(tmp_path: Path) -> None:
    trainer = SimpleNamespace(max_steps=10, global_batch_size=8)
    assert uses_reference_cache("auto", trainer, 80, tmp_path)  # 80 pairs seen: one epoch
    assert not uses_reference_cache("auto", trainer, 81, tmp_path)
    (tmp_path / FILE_NAME).write_bytes(b"")
    assert uses_reference_cache("auto", trainer, 81, tmp_path)  # a resumed run keeps its cache
    assert not uses_reference_cache("never", trainer, 1, tmp_path)
    assert uses_reference_cache("always", trainer, 10**6, tmp_path)
