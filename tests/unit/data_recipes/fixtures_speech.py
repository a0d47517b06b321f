"""Helpers for the speech-corpus recipe tests: tiny audio files in a corpus's own format, the recipe
run through the real CLI, manifests read back and decoded."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from lalm.config.data import CorpusRecipeConfig
from lalm.data.dataset import ManifestDataset
from tests.unit.scripts import run_script


def write_tone(path: Path, seconds: float, sample_rate: int = 16000, format: str | None = None) -> Path:
    """A sine of `seconds` (a whole number of samples) at `path`; `format` "MP3" for Common Voice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = int(round(seconds * sample_rate))
    frequency = 200 + 10 * (sum(path.name.encode()) % 40)
    wave = 0.2 * np.sin(2 * np.pi * frequency * np.arange(samples) / sample_rate)
    sf.write(path, wave.astype(np.float32), sample_rate, format=format)
    return path


def config(name: str, source_dir: Path, **overrides: Any) -> CorpusRecipeConfig:
    """The recipe's config as scripts/prepare_data.py builds it, with one worker."""
    return CorpusRecipeConfig(name=name, source_dir=str(source_dir), num_workers=1, **overrides)


def run_cli(recipe: str, source_dir: Path, output_dir: Path, *overrides: str) -> dict[str, Any]:
    """Run scripts/prepare_data.py as a user would; the summary.json it wrote."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = (f"recipe={recipe}", f"source_dir={source_dir}", f"output_dir={output_dir}", *overrides)
    done = run_script("prepare_data.py", *args, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((output_dir / "summary.json").read_text())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def by_id(path: Path) -> dict[str, dict[str, Any]]:
    return {record["id"]: record for record in read_jsonl(path)}


def decode(path: Path, index: int = 0) -> np.ndarray:
    """The waveform (16 kHz) of a manifest's example, decoded by lalm's own dataset."""
    example = ManifestDataset.from_manifest(str(path), "pretrain")[index]
    assert "bad" not in example, example
    (audio,) = [item for item in example["messages"][0]["content"] if item["type"] == "audio"]
    return audio["waveform"]
