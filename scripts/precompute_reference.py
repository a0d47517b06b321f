"""Compute DPO's reference log-probs ahead of training, from the same config as scripts/train.py.

    python scripts/precompute_reference.py experiment=synthetic_tiny stage=dpo output_dir=DIR init_from=SFT
    torchrun --nproc_per_node=N scripts/precompute_reference.py ...   # every rank a share, as in training

Writes <output_dir>/dpo/reference_logps.pt, the file `stage.cache_reference` reads
(lalm.training.reference_cache): the same key (the reference checkpoint's files, the manifests,
max_length, prompt seed, precision) and the same values the trainer's own pass would compute, so a
later `train.py stage=dpo` with the same overrides reads it instead of running the reference (with
cache_reference=auto it is used whenever the file is there; never ignores it). The reference is
init_from, built and wrapped as the trainer builds it (DeepSpeed without an optimizer, sharded under
ZeRO-3); under LoRA the trainer's reference is the policy with adapters off, which at the start is
init_from too. A file already there with the same key is left as it is; one computed for other inputs
is refused (exit 78), as train.py refuses it. Use it to run the reference pass on other machines or
hours than the training job, or once for several DPO runs that copy the file into their run folders.
"""

from __future__ import annotations

import sys
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def precompute(cfg: object) -> None:
    """Validate -> load the manifests -> build the reference as build_trainer does -> compute or read
    the cache (lalm.training.reference_cache.prepare_cache, the trainer's own function)."""
    from lalm.config.model import PretrainedModelConfig
    from lalm.config.train import TrainConfig, accumulation_steps
    from lalm.config.validation import validate
    from lalm.models.builders import build_model
    from lalm.models.training import AudioLanguageModel
    from lalm.stages.dpo import DpoStage
    from lalm.stages.registry import build_collator
    from lalm.training.build import collator_config, load_data, seed_everything, sharded_loading
    from lalm.training.distributed import init_distributed, is_main, world_size
    from lalm.training.engine import initialize_reference
    from lalm.training.exits import EXIT_CONFIG, TrainingExit
    from lalm.training.reference_cache import StaleReferenceCache, cache_run, prepare_cache
    from lalm.training.run_folder import RunLock

    assert isinstance(cfg, TrainConfig)
    if cfg.stage.name != "dpo":
        raise TrainingExit(EXIT_CONFIG, f"stage={cfg.stage.name}: reference log-probs are for stage=dpo")
    validate(cfg, world_size())
    assert cfg.init_from is not None  # validate() guarantees it for DPO
    train, dev = load_data(cfg)
    init_distributed(cfg.trainer.collective_timeout_s)
    run_dir = Path(cfg.output_dir) / cfg.stage.name
    lock = None
    if is_main():  # no training job may read a half-computed run folder meanwhile
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = RunLock(run_dir)
        lock.acquire()
    try:
        seed_everything(cfg.trainer.seed)
        with sharded_loading(cfg, accumulation_steps(cfg.trainer, world_size())):
            reference, processor = build_model(PretrainedModelConfig(path=cfg.init_from))
        engine = initialize_reference(AudioLanguageModel(reference), cfg.deepspeed, cfg.trainer)
        stage = DpoStage(cfg.stage, engine)
        collator = build_collator("dpo", processor, collator_config(cfg, reference))
        try:
            prepare_cache(
                stage, None, {"train": train, "dev": dev}, collator, cache_run(cfg, run_dir, engine.device)
            )
        except StaleReferenceCache as err:
            raise TrainingExit(EXIT_CONFIG, str(err)) from err
        if is_main() and cfg.stage.cache_reference == "never":
            print("lalm: note: stage.cache_reference=never ignores this file; use auto or always", flush=True)
    finally:
        if lock is not None:
            lock.release()


def main(argv: list[str]) -> None:
    from lalm.config.checks import compose_config, exit_on_input_error
    from lalm.config.store import register_configs
    from lalm.training.distributed import shutdown_distributed
    from lalm.training.exits import TrainingExit

    register_configs()
    with exit_on_input_error():
        cfg = compose_config(CONFIGS, "train", argv)
        together = False
        try:
            precompute(cfg)
            together = True
        except TrainingExit:
            together = True  # raised on every rank alike
            raise
        finally:
            shutdown_distributed(together)


if __name__ == "__main__":
    main(sys.argv[1:])
