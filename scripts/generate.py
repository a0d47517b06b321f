"""Answers of a checkpoint to a manifest: python scripts/generate.py checkpoint=DIR manifest=M output=OUT.jsonl.

Compose (Hydra, typed) -> join the process group (any number of ranks) -> generate -> rank 0 writes
one JSON line per example (dropped ones with their reason; lalm.eval.batch_generation) and prints a
summary. Bad input (a manifest or checkpoint that cannot be used) ends with exit code 78.
"""

from __future__ import annotations

import json
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from lalm.config.store import register_configs
from lalm.errors import LalmInputError
from lalm.eval.batch_generation import run_generation
from lalm.training.distributed import init_distributed, is_main
from lalm.training.exits import EXIT_CONFIG

register_configs()


@hydra.main(version_base=None, config_path="../configs", config_name="generate")
def main(cfg: DictConfig) -> None:
    generate_cfg = OmegaConf.to_object(cfg)
    init_distributed()
    try:
        summary = run_generation(generate_cfg)
    except (LalmInputError, FileNotFoundError) as error:
        print(f"lalm generate: {error}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    if is_main():
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
