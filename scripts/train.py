"""Train one stage: torchrun --nproc_per_node=N scripts/train.py stage=pretrain|sft|dpo output_dir=DIR.

Compose the config (Hydra, typed) -> validate -> build -> Trainer.fit(). Also runs as plain
`python scripts/train.py ...` (a group of one process).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from lalm.config.store import register_configs
from lalm.training.build import build_trainer

register_configs()


@hydra.main(version_base=None, config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> None:
    build_trainer(OmegaConf.to_object(cfg)).fit()


if __name__ == "__main__":
    main()
