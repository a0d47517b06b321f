"""Train one stage: torchrun --nproc_per_node=N scripts/train.py stage=pretrain|sft|dpo output_dir=DIR.

Compose the config (Hydra, typed) -> validate -> build -> Trainer.fit(). Also runs as plain
`python scripts/train.py ...` (a group of one process). A mistake in the command line, the config or
the manifests is printed in a few lines, without a traceback, and ends the process with exit code
EXIT_CONFIG (78) before anything is built or written. Hydra's own flags (--help, --cfg job, -m) go to
Hydra's command line unchanged.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from lalm.config.checks import compose_config, exit_on_input_error
from lalm.config.store import register_configs
from lalm.config.train import TrainConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

register_configs()


def run(cfg: TrainConfig) -> None:
    """Validate (config, then manifests) -> build -> fit: build_trainer checks before it allocates."""
    # Imported once the command line has composed: a mistake there is reported without loading torch.
    from lalm.training.build import build_trainer
    from lalm.training.distributed import shutdown_distributed
    from lalm.training.exits import TrainingExit

    together = False
    try:
        build_trainer(cfg).fit()
        together = True
    except TrainingExit:
        together = True  # raised on every rank at the same step boundary
        raise
    finally:
        shutdown_distributed(together)


def main(argv: list[str]) -> None:
    with exit_on_input_error():
        cfg = compose_config(CONFIGS, "train", argv)
        run(cfg)


@hydra.main(version_base=None, config_path="../configs", config_name="train")
def hydra_main(cfg: DictConfig) -> None:
    with exit_on_input_error():
        run(OmegaConf.to_object(cfg))


if __name__ == "__main__":
    if any(arg.startswith("-") for arg in sys.argv[1:]):
        hydra_main()
    else:
        main(sys.argv[1:])
