"""Each stage for a few steps on the tiny model, chained pretrain -> sft -> dpo as a user would run them."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

from lalm.data.collators import CollatorConfig, ConversationCollator, model_inputs
from lalm.data.dataset import ManifestDataset
from tests.integration.runs import run_stage, snapshot

STAGES = ("pretrain", "sft", "dpo")


@pytest.fixture(scope="module")
def chain(corpus_dir, tmp_path_factory):
    """pretrain -> sft -> dpo, each from the previous stage's final/ (three runs, one output dir)."""
    out = tmp_path_factory.mktemp("chain")
    runs = {"pretrain": run_stage(corpus_dir, out, "pretrain")}
    runs["sft"] = run_stage(corpus_dir, out, "sft", f"init_from={out}/pretrain/final")
    runs["dpo"] = run_stage(corpus_dir, out, "dpo", f"init_from={out}/sft/final")
    return out, runs


def _metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("stage", STAGES)
def test_stage_trains_what_it_should(chain, stage):
    out, runs = chain
    trainer, before = runs[stage]
    records = _metrics(out / stage / "metrics.jsonl")
    train = [r for r in records if "lr" in r]
    assert [r["step"] for r in train] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) and r["tokens"] > 0 for r in train)
    assert all(r["model_tflops_per_s"] > 0 and 0 < r["packing_efficiency"] <= 1 for r in train)
    assert any("eval/loss" in r and math.isfinite(r["eval/loss"]) for r in records)
    after = snapshot(trainer.engine.module)
    for name, param in trainer.engine.module.named_parameters():
        changed = not torch.equal(before[name], after[name])
        assert changed == param.requires_grad, (
            f"{stage}: {name} changed={changed} trainable={param.requires_grad}"
        )
    trainable = {n.split(".")[2] for n, p in trainer.engine.module.named_parameters() if p.requires_grad}
    # pretrain and sft train encoder, projector and LLM; the DPO config freezes the encoder.
    assert ("audio_tower" in trainable) == (stage != "dpo")
    assert {"multi_modal_projector", "language_model"} <= trainable


def test_dpo_starts_at_log2_and_reference_stays_frozen(chain):
    out, runs = chain
    trainer, _ = runs["dpo"]
    first = _metrics(out / "dpo" / "metrics.jsonl")[0]
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    assert {
        "rewards/chosen",
        "rewards/rejected",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
    } <= set(first)
    sft = dict(Qwen2AudioForConditionalGeneration.from_pretrained(out / "sft" / "final").named_parameters())
    reference = trainer.stage.reference.module.hf
    for name, param in reference.named_parameters():
        assert not param.requires_grad
        assert torch.equal(param.detach(), sft[name].detach()), name


@pytest.mark.parametrize("stage", STAGES)
def test_final_loads_with_transformers_and_matches(chain, corpus_dir, stage):
    out, runs = chain
    trainer, _ = runs[stage]
    final = out / stage / "final"
    model = Qwen2AudioForConditionalGeneration.from_pretrained(final).eval()
    processor = AutoProcessor.from_pretrained(final)
    dataset = ManifestDataset.from_manifest(str(corpus_dir / "sft" / "dev.jsonl"), "sft")
    examples = [dataset[0], dataset[1]]
    full = ConversationCollator(processor, CollatorConfig(trim_audio=False))(examples)  # stock encoder
    trimmed = ConversationCollator(processor)(examples)  # lalm's encoder on the real audio length
    trained = trainer.engine.module.hf.eval()
    with torch.no_grad():
        expected = trained(**model_inputs(trimmed)).logits
        loaded = model(**model_inputs(full)).logits
    torch.testing.assert_close(loaded, expected, rtol=1e-5, atol=1e-5)


def test_checkpoints_config_and_wandb_are_written(corpus_dir, tmp_path):
    run_stage(
        corpus_dir,
        tmp_path,
        "pretrain",
        "trainer.max_steps=2",
        "trainer.save_every=1",
        "trainer.wandb.mode=offline",
        "trainer.eval_every=0",
    )
    stage_dir = tmp_path / "pretrain"
    assert sorted(p.name for p in (stage_dir / "checkpoints").glob("step-*")) == [
        "step-0000001",
        "step-0000002",
    ]
    assert list((stage_dir / "checkpoints" / "step-0000002").glob("*optim_states.pt"))
    config = json.loads((stage_dir / "config.json").read_text())
    assert config["stage"]["name"] == "pretrain" and config["trainer"]["save_every"] == 1
    assert list((stage_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len([r for r in _metrics(stage_dir / "metrics.jsonl") if "lr" in r]) == 2


def test_pretrain_with_auxiliary_ctc(corpus_dir, tmp_path):
    trainer, before = run_stage(
        corpus_dir, tmp_path, "pretrain", "stage.ctc_weight=0.5", "trainer.eval_every=0"
    )
    records = _metrics(tmp_path / "pretrain" / "metrics.jsonl")
    assert all(r["ctc"] > 0 and math.isfinite(r["ctc"]) for r in records)
    assert all(r["loss"] == pytest.approx(r["lm_loss"] + 0.5 * r["ctc"], rel=1e-5) for r in records)
    head = "ctc_head.weight"
    assert not torch.equal(before[head], dict(trainer.engine.module.named_parameters())[head])
    with safe_open(str(tmp_path / "pretrain" / "final" / "model.safetensors"), "pt") as weights:
        assert not any("ctc" in key for key in weights.keys())  # noqa: SIM118
    Qwen2AudioForConditionalGeneration.from_pretrained(tmp_path / "pretrain" / "final")


def test_dpo_with_the_cached_reference_trains_like_the_live_one(chain, corpus_dir, tmp_path):
    """stage.cache_reference=always: one pass writes reference_logps.pt, the reference is released,
    and the losses equal the live reference's; a rerun reads the file; a stale file is refused."""
    out, _ = chain
    init = f"init_from={out}/sft/final"
    live, _ = run_stage(corpus_dir, tmp_path / "live", "dpo", init, "stage.cache_reference=never")
    cached, _ = run_stage(corpus_dir, tmp_path / "cached", "dpo", init, "stage.cache_reference=always")
    assert live.stage.reference is not None and cached.stage.reference is None
    assert (tmp_path / "cached" / "dpo" / "reference_logps.pt").is_file()
    assert not (tmp_path / "live" / "dpo" / "reference_logps.pt").exists()
    records = {name: _metrics(tmp_path / name / "dpo" / "metrics.jsonl") for name in ("live", "cached")}
    for live_record, cached_record in zip(records["live"], records["cached"], strict=True):
        for key in ("loss", "rewards/margins", "eval/loss"):
            if key in live_record:
                assert cached_record[key] == pytest.approx(live_record[key], rel=1e-5, abs=1e-6), key
    # A stale cache (here: computed for another max_length) is refused before training, naming why.
    from lalm.training.exits import EXIT_CONFIG, TrainingExit

    stale = tmp_path / "stale" / "dpo"
    stale.mkdir(parents=True)
    shutil.copy(tmp_path / "cached" / "dpo" / "reference_logps.pt", stale)
    with pytest.raises(TrainingExit) as err:
        run_stage(
            corpus_dir, tmp_path / "stale", "dpo", init, "stage.cache_reference=auto", "data.max_length=1000"
        )
    assert err.value.code == EXIT_CONFIG and "max_length: 1024 -> 1000" in err.value.message
