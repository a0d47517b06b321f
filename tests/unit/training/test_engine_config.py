"""The DeepSpeed config dict: engine settings from the deepspeed group, batch sizes and clipping from
lalm's own config, and no second source of truth for lr/optimizer/scheduler (STYLE.md #8)."""

from __future__ import annotations

from typing import Any

import pytest

from lalm.config.train import DeepSpeedConfig, OptimConfig, TrainerConfig
from lalm.training import engine
from lalm.training.engine import deepspeed_config, use_bf16

TRAINER = TrainerConfig(micro_batch_size=3, global_batch_size=24, precision="fp32")
OPTIM = OptimConfig(lr=3e-4, betas=[0.8, 0.95], eps=1e-6, weight_decay=0.05, max_grad_norm=0.7)


def _keys(tree: Any) -> set[str]:
    """Every key at every depth of a nested dict/list."""
    if isinstance(tree, dict):
        return set(tree) | {k for value in tree.values() for k in _keys(value)}
    if isinstance(tree, list):
        return {k for value in tree for k in _keys(value)}
    return set()


@pytest.fixture(autouse=True)
def _cpu(monkeypatch):
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")


@pytest.mark.parametrize("zero_stage", [0, 1, 2, 3])
def test_batch_clipping_and_zero_stage_come_from_their_own_configs(zero_stage):
    ds = DeepSpeedConfig(zero_stage=zero_stage, reduce_bucket_size=1234, overlap_comm=True)
    config = deepspeed_config(ds, TRAINER, OPTIM, accumulation=4)
    assert config["train_micro_batch_size_per_gpu"] == 3
    assert config["gradient_accumulation_steps"] == 4
    assert config["gradient_clipping"] == 0.7
    zero = config["zero_optimization"]
    assert zero["stage"] == zero_stage
    assert zero["reduce_bucket_size"] == 1234 and zero["overlap_comm"] is True
    assert zero.get("stage3_gather_16bit_weights_on_model_save", False) is (zero_stage == 3)
    assert config["bf16"] == {"enabled": False, "check_grad_overflow": True}  # precision=fp32
    # One source of truth: lr, optimizer and schedule are ours, not DeepSpeed's.
    assert not _keys(config) & {"optimizer", "scheduler", "lr", "train_batch_size"}
    assert "offload_optimizer" not in zero


def test_offloaded_optimizer_is_built_from_optim_config():
    ds = DeepSpeedConfig(zero_stage=3, offload_optimizer=True)
    config = deepspeed_config(ds, TRAINER, OPTIM, accumulation=2)
    assert config["zero_optimization"]["offload_optimizer"] == {"device": "cpu", "pin_memory": False}
    assert config["optimizer"]["params"] == {
        "lr": 3e-4,
        "betas": [0.8, 0.95],
        "eps": 1e-6,
        "weight_decay": 0.05,
    }
    assert "scheduler" not in _keys(config)  # the schedule stays lalm's LambdaLR


def test_bf16_section_follows_precision():
    bf16 = TrainerConfig(micro_batch_size=3, global_batch_size=24, precision="bf16")
    assert deepspeed_config(DeepSpeedConfig(), bf16, OPTIM, 1)["bf16"] == {
        "enabled": True,
        "check_grad_overflow": True,
    }


def test_use_bf16():
    assert use_bf16("fp32") is False
    assert use_bf16("bf16") is True
    assert use_bf16("auto") is False  # DS_ACCELERATOR=cpu: no GPU whatever the machine has


def test_auto_precision_is_bf16_on_a_gpu(monkeypatch):
    monkeypatch.setattr(engine, "has_gpu", lambda: True)
    assert use_bf16("auto") is True
    assert use_bf16("fp32") is False


def test_auto_precision_is_fp32_without_cuda(monkeypatch):
    monkeypatch.delenv("DS_ACCELERATOR")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert use_bf16("auto") is False
