"""A checkpoint saved on 2 ranks resumes on 1 through DeepSpeed's universal checkpoint (ZeRO-2, ZeRO-3).

The project's tiny model and engine (initialize_engine: AdamW over four param groups, LambdaLR) train
4 steps of fixed global batches on 2 gloo ranks, saving after step 2; the checkpoint is converted by
lalm.training.universal.to_universal, loaded on 1 rank (gradient accumulation 2 instead of 2 ranks)
and steps 3-4 are trained again. The losses must equal the uninterrupted run's, and the optimizer
must come back as it was (Adam step counter, per-group weight decay and learning rate).

This file is also the worker: torchrun runs it as a script (`_worker` below).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.distributed
ROOT = Path(__file__).resolve().parents[2]
ZERO_STAGES = (2, 3)
GLOBAL, MICRO, STEPS, SAVE_AT = 4, 2, 4, 2
TAG = f"step-{SAVE_AT:07d}"
# weight_decay > 0 and a warmup + cosine schedule: a lost per-group setting or a wrong Adam step
# count changes the resumed losses, and the LR changes every step (a schedule restored at the wrong
# step shows too).
OPTIM = {"lr": 1e-3, "weight_decay": 0.1, "warmup_steps": 2, "schedule": "cosine", "min_lr_ratio": 0.1}
# The encoder at half the rate: groups [LLM + projector decay, no decay, encoder decay, no decay], so a
# group given group 0's learning rate on the way back (DeepSpeed's ZeRO-3 fault) changes the losses.
ENCODER_LR_SCALE = 0.5


def _torchrun(nproc: int, *args: str) -> None:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        "--standalone",
        __file__,
        *args,
    ]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]


@pytest.fixture(scope="module")
def runs(corpus_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("universal")
    _torchrun(2, "train", str(out), str(corpus_dir))
    from lalm.training.universal import to_universal

    def convert(zero: int) -> float:
        started = time.monotonic()
        to_universal(out / f"zero{zero}" / "checkpoints" / TAG)
        return time.monotonic() - started

    with ThreadPoolExecutor(len(ZERO_STAGES)) as pool:  # each conversion is its own process
        seconds = dict(zip(ZERO_STAGES, pool.map(convert, ZERO_STAGES), strict=True))
    _torchrun(1, "resume", str(out), str(corpus_dir))
    return out, seconds


def _results(out: Path, mode: str, zero: int) -> dict:
    return json.loads((out / f"zero{zero}" / f"{mode}.json").read_text())


@pytest.mark.parametrize("zero", ZERO_STAGES)
def test_resume_on_one_rank_matches_two(runs, zero):
    out, _ = runs
    uninterrupted, resumed = _results(out, "train", zero), _results(out, "resume", zero)
    assert uninterrupted["world"] == 2 and resumed["world"] == 1
    assert [e["step"] for e in resumed["log"]] == [2, 3]
    reference = {e["step"]: e for e in uninterrupted["log"]}
    for entry in resumed["log"]:
        # Exactly equal on these machines; the tolerance is 20x below what a wrong Adam step count
        # gives at step 4 (DeepSpeed's ZeRO-3 shared-step fault: 6.8e-5 absolute).
        assert entry["loss"] == pytest.approx(reference[entry["step"]]["loss"], rel=5e-7, abs=0)
        assert entry["lr"] == pytest.approx(reference[entry["step"]]["lr"], rel=1e-12)
        assert entry["global_steps"] == reference[entry["step"]]["global_steps"]
    assert resumed["loaded"] == {"global_steps": SAVE_AT, "client": {"step": SAVE_AT}}
    # Each param group keeps its own Adam step and hyperparameters (ZeRO-3 repair in load_universal).
    assert resumed["adam_steps"] == [float(STEPS)] * len(resumed["adam_steps"])
    assert resumed["weight_decay"] == [OPTIM["weight_decay"], 0.0] * 2
    assert resumed["group_lr"] == pytest.approx(uninterrupted["group_lr"], rel=1e-12)
    llm_rate = resumed["group_lr"][0]
    assert resumed["group_lr"] == pytest.approx([llm_rate] * 2 + [ENCODER_LR_SCALE * llm_rate] * 2, rel=1e-12)


def test_conversion_is_idempotent_and_leaves_only_universal(runs):
    from lalm.training.universal import UNIVERSAL_DIR, needs_universal, saved_world_size, to_universal

    out, seconds = runs
    for zero in ZERO_STAGES:
        checkpoints = out / f"zero{zero}" / "checkpoints"
        tag_dir = checkpoints / TAG
        assert saved_world_size(tag_dir) == 2
        assert needs_universal(tag_dir, 1) and not needs_universal(tag_dir, 2)
        # Nothing beside the checkpoint: no `latest_universal` (ds_to_universal writes one into the
        # parent of its output), no temporary folder. (DeepSpeed's own zero_to_fp32.py may be there.)
        assert [p.name for p in checkpoints.iterdir() if p.is_dir() or "universal" in p.name] == [TAG]
        assert (tag_dir / UNIVERSAL_DIR / "zero" / "optimizer_state.pt").is_file()
        assert not (tag_dir / ".universal.tmp").exists()
        assert seconds[zero] < 60
        started = time.monotonic()
        assert to_universal(tag_dir) == tag_dir / UNIVERSAL_DIR
        assert time.monotonic() - started < 1.0  # already converted: nothing redone


# ---------------------------------------------------------------- the worker, run by torchrun


def _worker(mode: str, out: Path, corpus: Path) -> None:
    import deepspeed  # noqa: F401  (imported before torch.distributed use, as in the trainer)
    import torch
    import torch.nn.functional as F

    from lalm.config.model import TinyModelConfig
    from lalm.config.train import DeepSpeedConfig, LrScaleConfig, OptimConfig, TrainerConfig
    from lalm.data.collators import IGNORE_INDEX, ConversationCollator, model_inputs
    from lalm.data.dataset import ManifestDataset
    from lalm.models.builders import build_tiny
    from lalm.training import engine as lalm_engine
    from lalm.training.distributed import all_reduce_sum, barrier, init_distributed, is_main, rank, world_size
    from lalm.training.universal import load_universal, universal_checkpoint_config

    init_distributed()
    world = world_size()
    accumulation = GLOBAL // (MICRO * world)
    manifests = [str(corpus / stage / "train.jsonl") for stage in ("pretrain", "sft", "dpo")]
    tiny = TinyModelConfig(tokenizer_corpus=manifests, vocab_size=2000, encoder_layers=1, llm_layers=1)
    dataset = ManifestDataset.from_manifest(str(corpus / "pretrain" / "train.jsonl"), "pretrain")

    def build(zero: int):
        model, processor = build_tiny(tiny)
        trainer = TrainerConfig(
            max_steps=6, micro_batch_size=MICRO, global_batch_size=GLOBAL, precision="fp32"
        )
        original = lalm_engine.deepspeed_config

        def with_universal(*args, **kwargs):  # the project's config, plus the universal load switch
            return {**original(*args, **kwargs), **universal_checkpoint_config()}

        if mode == "resume":
            lalm_engine.deepspeed_config = with_universal
        optim = OptimConfig(**OPTIM, lr_scale=LrScaleConfig(encoder=ENCODER_LR_SCALE))
        try:
            engine = lalm_engine.initialize_engine(
                model, DeepSpeedConfig(zero_stage=zero), trainer, optim, accumulation
            )
        finally:
            lalm_engine.deepspeed_config = original
        return engine, ConversationCollator(processor)

    def train(engine, collate, steps) -> list[dict]:
        log = []
        for step in steps:
            examples = [dataset[step * GLOBAL + i] for i in range(GLOBAL)]
            micro = [collate(examples[j * MICRO : (j + 1) * MICRO]) for j in range(GLOBAL // MICRO)]
            tokens = sum(int((m["labels"][:, 1:] != IGNORE_INDEX).sum()) for m in micro)
            lr = engine.get_lr()[0]
            total = 0.0
            for a in range(accumulation):  # micro-batch j = rank * accumulation + a: the same split
                batch = micro[rank() * accumulation + a]
                logits = engine(**model_inputs(batch)).logits
                labels = batch["labels"][:, 1:]
                ce = F.cross_entropy(
                    logits[:, :-1].flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
                )
                # The loss of the global batch: DeepSpeed's division by accumulation and by ranks undone.
                engine.backward(ce / tokens * world * accumulation)
                engine.step()
                total += ce.item()
            loss = all_reduce_sum({"ce": total}, same_keys=True)["ce"] / tokens
            log.append({"step": step, "loss": loss, "lr": lr, "global_steps": engine.global_steps})
        return log

    for zero in ZERO_STAGES:
        torch.manual_seed(0)
        engine, collate = build(zero)
        checkpoints = out / f"zero{zero}" / "checkpoints"
        result: dict = {"world": world}
        if mode == "train":
            log = train(engine, collate, range(SAVE_AT))
            client_state = {"lalm": {"step": SAVE_AT}}
            engine.save_checkpoint(str(checkpoints), tag=TAG, client_state=client_state, save_latest=False)
            log += train(engine, collate, range(SAVE_AT, STEPS))
        else:
            client_state = load_universal(engine, checkpoints / TAG)
            result["loaded"] = {"global_steps": engine.global_steps, "client": client_state.get("lalm")}
            log = train(engine, collate, range(SAVE_AT, STEPS))
        optimizer = engine.optimizer.optimizer
        result["adam_steps"] = [float(state["step"]) for state in optimizer.state.values() if "step" in state]
        result["weight_decay"] = [group["weight_decay"] for group in optimizer.param_groups]
        result["group_lr"] = [group["lr"] for group in optimizer.param_groups]
        result["log"] = log
        if is_main():
            (out / f"zero{zero}" / f"{mode}.json").write_text(json.dumps(result, indent=1))
        barrier()
        engine.destroy()


if __name__ == "__main__":
    _worker(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
