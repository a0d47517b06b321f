"""scripts/prepare_data.py end to end through Hydra."""

from __future__ import annotations

import json
import subprocess

from tests.unit.scripts import run_script


def _run(*overrides: str) -> subprocess.CompletedProcess:
    return run_script("prepare_data.py", *overrides)


def test_prepare_data_writes_every_manifest(tmp_path):
    result = _run("recipe=synthetic", f"output_dir={tmp_path}", "recipe.size=0.01")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    for stage in ("pretrain", "sft", "dpo"):
        for split in ("train", "dev", "test"):
            lines = (tmp_path / stage / f"{split}.jsonl").read_text().splitlines()
            assert len(lines) == summary["records"][f"{stage}/{split}"] > 0
    assert summary["clips"] == len(list((tmp_path / "audio").rglob("*.wav")))


def test_prepare_data_rejects_a_typo(tmp_path):
    result = _run("recipe=synthetic", f"output_dir={tmp_path}", "recipe.sizee=2")
    assert result.returncode != 0 and "sizee" in result.stderr
    assert not (tmp_path / "pretrain").exists()
