"""Train one stage: torchrun --nproc_per_node=N scripts/train.py stage=pretrain|sft|dpo output_dir=DIR.

Compose the config (Hydra, typed) -> validate -> build -> Trainer.fit(). Also runs as plain
`python scripts/train.py ...` (a group of one process).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from lalm.config.store import register_configs
from lalm.training.build import build_trainer
from lalm.training.distributed import init_distributed

register_configs()


@hydra.main(version_base=None, config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> None:
    train_cfg = OmegaConf.to_object(cfg)
    init_distributed()
    build_trainer(train_cfg).fit()


if __name__ == "__main__":
    main()
