"""Shared fixtures: a small synthetic corpus made by the project's own recipe, and the tiny model."""

from __future__ import annotations

import os
from pathlib import Path

# DeepSpeed picks its accelerator at import: CPU everywhere in this suite (tests/gpu opts back in).
os.environ.setdefault("DS_ACCELERATOR", "cpu")

import pytest

from data_recipes import synthetic
from lalm.config.data import SyntheticRecipeConfig
from lalm.config.model import TinyModelConfig
from lalm.models.builders import build_tiny

STAGES = ("pretrain", "sft", "dpo")
# size 0.05: ~220 clips (train ~120 utterances), generated in a few seconds on 2 cores.
TEST_CORPUS = SyntheticRecipeConfig(size=0.05, seed=0, num_workers=2)


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A machine without espeak-ng and sox (a GPU box) can be handed a corpus made elsewhere with
    # `python scripts/prepare_data.py recipe=synthetic recipe.size=0.05 output_dir=DIR`.
    if os.environ.get("LALM_TEST_CORPUS"):
        return Path(os.environ["LALM_TEST_CORPUS"]).resolve()
    out = tmp_path_factory.mktemp("synthetic")
    synthetic.prepare(TEST_CORPUS, out)
    return out


def tiny_config(corpus: Path, **overrides: object) -> TinyModelConfig:
    corpus_files = [str(corpus / stage / "train.jsonl") for stage in STAGES]
    return TinyModelConfig(tokenizer_corpus=corpus_files, vocab_size=2000, **overrides)


@pytest.fixture(scope="session")
def tiny(corpus_dir: Path):  # noqa: ANN201 - (model, processor)
    return build_tiny(tiny_config(corpus_dir))


@pytest.fixture(scope="session")
def processor(tiny):  # noqa: ANN001, ANN201
    return tiny[1]
