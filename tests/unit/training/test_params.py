"""What a stage trains: every parameter belongs to encoder/projector/LLM, flags freeze whole parts,
LoRA trains adapters on the LLM only, and AdamW groups skip frozen parameters and give each part the
learning rate optim.lr_scale asks for, through the schedule and into the update."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import PeftModel

from lalm.config.train import LoraConfig, LrScaleConfig, StageConfig
from lalm.models.builders import build_tiny
from lalm.training.params import parameter_groups, part_of, prepare_trainable, trainable_parameters
from lalm.training.schedule import lr_multiplier
from tests.conftest import tiny_config

LLM_LAYERS = 3  # tiny_config's default
LORA_TARGETS = 7  # q, k, v, o, gate, up, down projections of each LLM layer


@pytest.fixture
def model(corpus_dir: Path):  # noqa: ANN201 - a fresh tiny Qwen2AudioForConditionalGeneration
    """A new model per test (~0.1 s): prepare_trainable mutates it, the session `tiny` must stay intact."""
    return build_tiny(tiny_config(corpus_dir))[0]


def _trainable(model) -> set[str]:  # noqa: ANN001
    return {name for name, p in model.named_parameters() if p.requires_grad}


def _frozen(model) -> set[str]:  # noqa: ANN001
    return {name for name, p in model.named_parameters() if not p.requires_grad}


def test_every_parameter_belongs_to_a_part(model):
    parts = {name: part_of(name) for name, _ in model.named_parameters()}
    assert set(parts.values()) == {"encoder", "projector", "llm"}
    for name, part in parts.items():
        expected = (
            "encoder"
            if ".audio_tower." in name
            else "projector"
            if ".multi_modal_projector." in name
            else "llm"
        )
        assert part == expected, name
    assert part_of("lm_head.weight") == "llm"
    # peft prefixes names with base_model.model.; the part stays the same.
    assert part_of("base_model.model.model.audio_tower.conv1.weight") == "encoder"
    with pytest.raises(ValueError, match="no known part"):
        part_of("model.vision_tower.weight")


def test_sft_without_encoder_freezes_exactly_the_audio_tower(model):
    stage = StageConfig(name="sft", train_encoder=False, train_projector=True, train_llm=True)
    prepared = prepare_trainable(model, stage)
    assert prepared is model  # no LoRA: the same module, only requires_grad changed
    audio_tower = {name for name, _ in model.named_parameters() if ".audio_tower." in name}
    assert audio_tower and _frozen(model) == audio_tower
    assert "lm_head.weight" in _trainable(model)
    assert "model.multi_modal_projector.linear.weight" in _trainable(model)


@pytest.mark.parametrize(
    "flags, trainable_parts",
    [
        ((True, True, True), {"encoder", "projector", "llm"}),
        ((False, True, False), {"projector"}),
        ((True, False, True), {"encoder", "llm"}),
    ],
)
def test_flags_choose_the_trainable_parts(model, flags, trainable_parts):
    encoder, projector, llm = flags
    prepare_trainable(
        model, StageConfig(name="pretrain", train_encoder=encoder, train_projector=projector, train_llm=llm)
    )
    for name, param in model.named_parameters():
        if "embed_positions" not in name:
            assert param.requires_grad == (part_of(name) in trainable_parts), name


@pytest.mark.parametrize("lora", [False, True])
def test_whisper_position_table_is_always_frozen(model, lora):
    for param in model.parameters():
        param.requires_grad_(True)  # even if something unfroze it before
    stage = StageConfig(name="pretrain", lora=LoraConfig(enabled=lora, r=4, alpha=8))
    prepared = prepare_trainable(model, stage)
    positions = [p for name, p in prepared.named_parameters() if "embed_positions" in name]
    assert len(positions) == 1
    assert not positions[0].requires_grad


@pytest.mark.parametrize("train_encoder, train_projector", [(False, True), (True, False), (False, False)])
def test_lora_trains_adapters_on_the_llm_and_the_flagged_parts(model, train_encoder, train_projector):
    stage = StageConfig(
        name="sft",
        train_encoder=train_encoder,
        train_projector=train_projector,
        train_llm=True,
        lora=LoraConfig(enabled=True, r=4, alpha=8),
    )
    prepared = prepare_trainable(model, stage)
    assert isinstance(prepared, PeftModel)
    names = dict(prepared.named_parameters())
    lora = {name for name in names if "lora_" in name}
    assert len(lora) == LLM_LAYERS * LORA_TARGETS * 2  # lora_A and lora_B of each target
    assert all(".language_model." in name for name in lora)  # none in the encoder's q/k/v
    expected = set(lora)
    for name in names:
        if "lora_" in name or "embed_positions" in name:
            continue
        part = part_of(name)
        if (part == "encoder" and train_encoder) or (part == "projector" and train_projector):
            expected.add(name)
    assert _trainable(prepared) == expected
    base_llm = [n for n in names if part_of(n) == "llm" and "lora_" not in n]
    assert base_llm and not any(names[n].requires_grad for n in base_llm)
    assert names["base_model.model.lm_head.weight"].requires_grad is False


def test_lora_adapter_shapes_follow_r(model):
    stage = StageConfig(name="sft", lora=LoraConfig(enabled=True, r=4, alpha=8))
    prepared = prepare_trainable(model, stage)
    lora_a = dict(prepared.named_parameters())[
        "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.default.weight"
    ]
    assert lora_a.shape == (4, 192)


def test_parameter_groups_split_by_rank_and_skip_frozen(model):
    prepare_trainable(model, StageConfig(name="sft", train_encoder=False))
    groups = parameter_groups(model.named_parameters(), weight_decay=0.1, lr=3e-4, lr_scale=LrScaleConfig())
    # One rate: the two groups of checkpoints saved before lr_scale existed, in the same order.
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert [g["lr"] for g in groups] == [3e-4, 3e-4]
    decay, no_decay = ({id(p) for p in g["params"]} for g in groups)
    params = dict(model.named_parameters())
    expected_decay = {id(p) for p in params.values() if p.requires_grad and p.ndim >= 2}
    expected_no_decay = {id(p) for p in params.values() if p.requires_grad and p.ndim == 1}
    assert decay == expected_decay and no_decay == expected_no_decay
    assert id(params["lm_head.weight"]) in decay
    assert id(params["model.language_model.norm.weight"]) in no_decay
    assert id(params["model.multi_modal_projector.linear.bias"]) in no_decay
    frozen = {id(p) for p in params.values() if not p.requires_grad}
    assert frozen and not frozen & (decay | no_decay)
    assert len(decay) + len(no_decay) == len(trainable_parameters(model))


# ---------------------------------------------------------------- per-part learning rates

LR = 1e-3


def _ids(params) -> set[int]:  # noqa: ANN001
    return {id(p) for p in params}


def _expected(model, parts: tuple[str, ...], decay: bool) -> set[int]:  # noqa: ANN001
    """The trainable parameters of `parts`, the >= 2-D ones (decay) or the 1-D ones."""
    return {
        id(p)
        for name, p in model.named_parameters()
        if p.requires_grad and part_of(name) in parts and (p.ndim >= 2) == decay
    }


def test_each_part_gets_its_own_rate_llm_first(model):
    prepare_trainable(model, StageConfig(name="pretrain"))  # everything trains
    scale = LrScaleConfig(encoder=0.1, projector=0.5, llm=2.0)
    groups = parameter_groups(model.named_parameters(), weight_decay=0.1, lr=LR, lr_scale=scale)
    assert [g["lr"] for g in groups] == pytest.approx([2e-3, 2e-3, 5e-4, 5e-4, 1e-4, 1e-4])
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0, 0.1, 0.0, 0.1, 0.0]
    expected = [
        _expected(model, (part,), decay)
        for part in ("llm", "projector", "encoder")
        for decay in (True, False)
    ]
    assert [_ids(g["params"]) for g in groups] == expected
    assert all(expected)
    assert sum(len(g["params"]) for g in groups) == len(trainable_parameters(model))
    # Within a group, the model's order (what ZeRO flattens and a checkpoint's state is matched by).
    llm_decay = [p for name, p in model.named_parameters() if part_of(name) == "llm" and p.ndim >= 2]
    assert [id(p) for p in groups[0]["params"]] == [id(p) for p in llm_decay]


def test_parts_with_the_same_rate_share_groups(model):
    prepare_trainable(model, StageConfig(name="pretrain"))
    scale = LrScaleConfig(encoder=0.1)  # projector and LLM stay at 1.0
    groups = parameter_groups(model.named_parameters(), weight_decay=0.05, lr=LR, lr_scale=scale)
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0, 0.05, 0.0]
    assert [_ids(g["params"]) for g in groups] == [
        _expected(model, ("llm", "projector"), True),
        _expected(model, ("llm", "projector"), False),
        _expected(model, ("encoder",), True),
        _expected(model, ("encoder",), False),
    ]


def test_frozen_parts_leave_no_empty_groups(model):
    # Projector only: its rate is group 0's (the one the trainer logs), the other scales do not matter.
    prepare_trainable(
        model, StageConfig(name="pretrain", train_encoder=False, train_projector=True, train_llm=False)
    )
    scale = LrScaleConfig(encoder=0.1, projector=3.0, llm=0.5)
    groups = parameter_groups(model.named_parameters(), weight_decay=0.1, lr=LR, lr_scale=scale)
    assert [g["lr"] for g in groups] == pytest.approx([3e-3, 3e-3])
    assert [_ids(g["params"]) for g in groups] == [
        _expected(model, ("projector",), True),
        _expected(model, ("projector",), False),
    ]


def test_lora_adapters_train_at_the_llm_rate(model):
    stage = StageConfig(name="sft", train_encoder=False, lora=LoraConfig(enabled=True, r=4, alpha=8))
    prepared = prepare_trainable(model, stage)
    scale = LrScaleConfig(projector=4.0, llm=0.5)
    groups = parameter_groups(prepared.named_parameters(), weight_decay=0.0, lr=LR, lr_scale=scale)
    assert [g["lr"] for g in groups] == pytest.approx([5e-4, 4e-3, 4e-3])  # adapters have no 1-D weights
    names = {id(p): name for name, p in prepared.named_parameters()}
    assert groups[0]["params"] and all("lora_" in names[id(p)] for p in groups[0]["params"])
    assert all(part_of(names[id(p)]) == "projector" for g in groups[1:] for p in g["params"])


def test_schedule_and_update_use_each_groups_rate(model):
    """The schedule is a LambdaLR multiplier of each group's own base rate, and AdamW's first update
    moves every weight by its group's scheduled rate: m / sqrt(v) = g / |g| = 1 for a gradient of ones."""
    prepare_trainable(model, StageConfig(name="pretrain"))
    scale = LrScaleConfig(encoder=0.1, projector=0.5, llm=1.0)
    groups = parameter_groups(model.named_parameters(), weight_decay=0.0, lr=LR, lr_scale=scale)
    base = [g["lr"] for g in groups]
    optimizer = torch.optim.AdamW(groups, lr=LR, eps=1e-12)  # lr: only the default no group uses
    multiplier = lr_multiplier("cosine", warmup_steps=2, max_steps=10, min_ratio=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
    # Warmup 1/2, 2/2, then cosine from 1 to 0.1 over 8 steps: step 6 is halfway, 0.55.
    for step, factor in [(0, 0.5), (1, 1.0), (6, 0.55)]:
        while scheduler.last_epoch < step:
            optimizer.step()  # no gradients yet: nothing moves
            scheduler.step()
        assert multiplier(step) == pytest.approx(factor)
        assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([b * factor for b in base])
    params = [p for g in optimizer.param_groups for p in g["params"]]
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()  # the first real update, at step 6 (factor 0.55)
    moved = iter(before)
    for group, scale_of_part in zip(optimizer.param_groups, [1.0, 1.0, 0.5, 0.5, 0.1, 0.1], strict=True):
        for p in group["params"]:
            torch.testing.assert_close(p.detach(), next(moved) - LR * scale_of_part * 0.55)
