"""Score a checkpoint on eval manifests: python scripts/evaluate.py checkpoint=DIR manifests=[...] output_dir=OUT.

Compose (Hydra, typed) -> join the process group (any number of ranks) -> evaluate -> write
metrics.json, metrics.md and predictions.jsonl into output_dir (rank 0).
"""

from __future__ import annotations

import json

import hydra
from omegaconf import DictConfig, OmegaConf

from lalm.config.store import register_configs
from lalm.eval.runner import run_evaluation
from lalm.training.distributed import init_distributed, is_main

register_configs()


@hydra.main(version_base=None, config_path="../configs", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    eval_cfg = OmegaConf.to_object(cfg)
    init_distributed()
    metrics = run_evaluation(eval_cfg)
    if is_main():
        print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
