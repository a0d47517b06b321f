"""torchrun with 2 gloo processes on CPU, real DeepSpeed ZeRO-2 and ZeRO-3, every stage chained.

The same global batch on 1 process (accumulation 2) and on 2 processes (accumulation 1) must give
the same losses and the same trained model: loss normalisation and gradient averaging are right.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

from lalm.data.collators import CollatorConfig, ConversationCollator, model_inputs
from lalm.data.dataset import ManifestDataset
from tests.torchrun import TRAIN, cpu_env, torchrun_command

pytestmark = pytest.mark.distributed
ROOT = Path(__file__).resolve().parents[2]
STAGES = ("pretrain", "sft", "dpo")
SETUPS = {"single": (1, "zero2"), "zero2": (2, "zero2"), "zero3": (2, "zero3")}
# Length-grouped batches are a function of the global batch only, so they too must not depend on ranks.
COMMON = ["trainer=smoke", "model.vocab_size=2000", "data.length_groups=2", "data.packing=always"]


def _torchrun(nproc: int, *overrides: str) -> None:
    command, env = torchrun_command(nproc, TRAIN, *overrides), cpu_env()
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]


@pytest.fixture(scope="module")
def chains(corpus_dir, tmp_path_factory):
    out = {}
    for name, (nproc, zero) in SETUPS.items():
        run = tmp_path_factory.mktemp(name)
        for stage, previous in zip(STAGES, (None, "pretrain", "sft"), strict=True):
            init = [f"init_from={run}/{previous}/final"] if previous else []
            if stage == "dpo":  # the cached reference, computed by all ranks together (ZeRO-3: in lockstep)
                init.append("stage.cache_reference=always")
            _torchrun(
                nproc,
                f"stage={stage}",
                f"deepspeed={zero}",
                f"data.dir={corpus_dir}",
                f"output_dir={run}",
                *COMMON,
                *init,
            )
        out[name] = run
    return out


def _train_losses(run: Path, stage: str) -> list[float]:
    lines = (run / stage / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if '"lr"' in line]


@pytest.mark.parametrize("zero", ["zero2", "zero3"])
@pytest.mark.parametrize("stage", STAGES)
def test_two_ranks_match_one(chains, corpus_dir, zero, stage):
    single, multi = _train_losses(chains["single"], stage), _train_losses(chains[zero], stage)
    assert len(multi) == 3
    assert multi == pytest.approx(single, rel=1e-4)
    final = chains[zero] / stage / "final"
    model = Qwen2AudioForConditionalGeneration.from_pretrained(final).eval()
    reference = Qwen2AudioForConditionalGeneration.from_pretrained(chains["single"] / stage / "final").eval()
    dataset = ManifestDataset.from_manifest(str(corpus_dir / "sft" / "dev.jsonl"), "sft")
    full = CollatorConfig(trim_audio=False)  # stock transformers' encoder takes the full window
    batch = ConversationCollator(AutoProcessor.from_pretrained(final), full)([dataset[0], dataset[1]])
    with torch.no_grad():
        torch.testing.assert_close(
            model(**model_inputs(batch)).logits, reference(**model_inputs(batch)).logits, rtol=1e-3, atol=1e-3
        )


def test_the_reference_cache_is_written_once_per_run(chains):
    tables = []
    for run in chains.values():
        saved = torch.load(run / "dpo" / "reference_logps.pt", weights_only=True)
        tables.append({i: (c, r) for i, c, r in saved["tables"]["train"]})
    assert len(tables[0]) > 10
    for table in tables[1:]:  # 1 rank, 2 ranks ZeRO-2, 2 ranks ZeRO-3: the same values
        assert table.keys() == tables[0].keys()
        for key, (chosen, rejected) in table.items():
            assert chosen == pytest.approx(tables[0][key][0], rel=1e-4)
            assert rejected == pytest.approx(tables[0][key][1], rel=1e-4)


def test_dpo_starts_at_log2_on_every_setup(chains):
    for run in chains.values():
        assert _train_losses(run, "dpo")[0] == pytest.approx(0.6931471805599453, abs=1e-6)


def test_zero3_with_optimizer_offload_matches(chains, corpus_dir, tmp_path):
    """deepspeed=zero3_offload (DeepSpeed's CPU Adam, compiled on first use) trains like ZeRO-2."""
    _torchrun(
        1,
        "stage=pretrain",
        "deepspeed=zero3_offload",
        f"data.dir={corpus_dir}",
        f"output_dir={tmp_path}",
        *COMMON,
    )
    assert _train_losses(tmp_path, "pretrain") == pytest.approx(
        _train_losses(chains["single"], "pretrain"), rel=1e-4
    )
