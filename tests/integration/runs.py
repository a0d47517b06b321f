"""Run a stage in this process through the same path as scripts/train.py (compose -> build -> fit)."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from lalm.config.store import register_configs
from lalm.training.build import build_trainer
from lalm.training.trainer import Trainer

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def compose_train(*overrides: str):  # noqa: ANN201 - TrainConfig
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return OmegaConf.to_object(compose(config_name="train", overrides=list(overrides)))


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: param.detach().clone() for name, param in module.named_parameters()}


def run_stage(
    corpus: Path, output: Path, stage: str, *overrides: str
) -> tuple[Trainer, dict[str, torch.Tensor]]:
    """Build and fit one stage with the smoke trainer; returns the trainer and the weights before fit."""
    cfg = compose_train(
        f"stage={stage}",
        f"data.dir={corpus}",
        f"output_dir={output}",
        "trainer=smoke",
        "model.vocab_size=2000",
        *overrides,
    )
    trainer = build_trainer(cfg)
    before = snapshot(trainer.engine.module)
    trainer.fit()
    return trainer, before
