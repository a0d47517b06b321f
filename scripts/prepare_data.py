"""Run a data recipe: python scripts/prepare_data.py recipe=synthetic output_dir=DIR [recipe.size=2]."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # data_recipes/ lives beside src/, not inside the package

from lalm.config.store import register_configs  # noqa: E402

register_configs()


@hydra.main(version_base=None, config_path="../configs", config_name="prepare_data")
def main(cfg: DictConfig) -> None:
    recipe_cfg = OmegaConf.to_object(cfg.recipe)
    recipe = importlib.import_module(f"data_recipes.{recipe_cfg.name}")
    summary = recipe.prepare(recipe_cfg, Path(cfg.output_dir).resolve())
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
