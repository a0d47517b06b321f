"""LoRA (peft) SFT and DPO: only adapters train, the export is merged, the DPO reference is the policy
with its adapters switched off (no second model)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors import safe_open
from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

from lalm.data.collators import CollatorConfig, ConversationCollator, model_inputs
from lalm.data.dataset import ManifestDataset
from tests.integration.runs import run_stage

LORA_ONLY = (
    "stage.lora.enabled=true",
    "stage.lora.r=4",
    "stage.train_encoder=false",
    "stage.train_projector=false",
)


@pytest.fixture(scope="module")
def lora_runs(corpus_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora")
    run_stage(corpus_dir, out, "pretrain")
    sft = run_stage(corpus_dir, out, "sft", f"init_from={out}/pretrain/final", *LORA_ONLY, "optim.lr=1e-2")
    dpo = run_stage(corpus_dir, out, "dpo", f"init_from={out}/sft/final", *LORA_ONLY)
    return out, {"sft": sft, "dpo": dpo}


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_only_adapters_train(lora_runs, stage):
    out, runs = lora_runs
    trainer, before = runs[stage]
    after = dict(trainer.engine.module.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert changed and all("lora_" in n and "language_model" in n for n in changed), sorted(changed)[:5]
    assert not any(p.requires_grad for n, p in after.items() if "lora_" not in n)
    # In the export, only the adapted linear layers of the LLM differ from the starting checkpoint.
    start = dict(_load(out / ("pretrain" if stage == "sft" else "sft") / "final").named_parameters())
    final = dict(_load(out / stage / "final").named_parameters())
    moved = {n for n in final if not torch.equal(final[n], start[n])}
    assert moved and all("language_model" in n and n.split(".")[-2].endswith("proj") for n in moved)


def _load(path):
    return Qwen2AudioForConditionalGeneration.from_pretrained(path).eval()


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_export_is_merged_and_matches_the_adapted_model(lora_runs, corpus_dir, stage):
    out, runs = lora_runs
    trainer, _ = runs[stage]
    final = out / stage / "final"
    with safe_open(str(final / "model.safetensors"), "pt") as weights:
        assert not any("lora" in key or "base_model" in key for key in weights.keys())  # noqa: SIM118
    model = Qwen2AudioForConditionalGeneration.from_pretrained(final).eval()
    processor = AutoProcessor.from_pretrained(final)
    dataset = ManifestDataset.from_manifest(str(corpus_dir / "sft" / "dev.jsonl"), "sft")
    batch = ConversationCollator(processor, CollatorConfig(trim_audio=False))([dataset[0]])  # stock encoder
    trimmed = ConversationCollator(processor)([dataset[0]])
    with torch.no_grad():
        loaded = model(**model_inputs(batch)).logits
        adapted = trainer.engine.module.hf.eval()(**model_inputs(trimmed)).logits  # adapters still separate
    torch.testing.assert_close(loaded, adapted, rtol=1e-5, atol=1e-5)
    start = Qwen2AudioForConditionalGeneration.from_pretrained(
        out / ("pretrain" if stage == "sft" else "sft") / "final"
    )
    with torch.no_grad():
        assert not torch.allclose(start.eval()(**model_inputs(batch)).logits, loaded)


def test_lora_dpo_reference_is_the_policy_without_adapters(lora_runs):
    out, runs = lora_runs
    trainer, _ = runs["dpo"]
    assert trainer.stage.reference is None
    first = json.loads((out / "dpo" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)
