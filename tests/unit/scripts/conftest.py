"""Fixtures of the script tests that talk to a model: a saved tiny checkpoint and spoken questions."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lalm.models.builders import build_tiny
from tests.conftest import tiny_config


@pytest.fixture(scope="session")
def tiny_checkpoint(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The random-init tiny model and its processor, saved as a final/ folder is."""
    path = tmp_path_factory.mktemp("tiny_checkpoint")
    model, processor = build_tiny(tiny_config(corpus_dir))
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def spoken(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - a function text -> WAV path
    """Speak a sentence with espeak-ng into a WAV file (22.05 kHz, as espeak-ng writes it)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    folder = tmp_path_factory.mktemp("spoken")

    def speak(text: str, name: str) -> Path:
        path = folder / f"{name}.wav"
        subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
        return path

    return speak
