"""Resuming on a different number of ranks: DeepSpeed's universal checkpoint (ZeRO-1/2/3).

A ZeRO checkpoint holds one optimizer shard per data-parallel rank (`zero_pp_rank_<r>_mp_rank_00_
optim_states.pt`: that rank's slice of the flat fp32 weights and Adam moments), and DeepSpeed loads it
only on the same number of ranks: ZeRO-1/2 raise "The checkpoint being loaded used a DP world size
of 2 but the current world size is 1" (engine._load_zero_checkpoint; ZeRO-2's `elastic_checkpoint`
option never gets that far), ZeRO-3 would load the wrong shard. The universal format stores every
parameter whole instead (`zero/<param name>/{fp32,exp_avg,exp_avg_sq}.pt`), and an engine started with
`"checkpoint": {"load_universal": true}` cuts its own partitions out of it, on any number of ranks.

The flow (the trainer decides; this module only converts and loads):

    if needs_universal(tag_dir, world_size()):       # any rank may ask: it only lists files
        if is_main():
            to_universal(tag_dir)                     # once per checkpoint, then kept beside it
        barrier()
        config.update(universal_checkpoint_config())  # before initialize_engine: read at load time
        ...
        load_universal(engine, tag_dir)               # all ranks, instead of engine.load_checkpoint

Nothing has to be added to the checkpoint when it is saved: `param_shapes` is written by DeepSpeed
itself, and the `universal_checkpoint_info` entry ds_to_universal asserts on for ZeRO-1/2 is injected
at conversion time (--inject_missing_state), so checkpoints saved before this module existed convert
too. ZeRO-0 (no partitioned optimizer: the full optimizer state is in mp_rank_00_model_states.pt)
needs no conversion: any number of ranks loads it as it is.

Frozen parameters and buffers are NOT read from a universal checkpoint (DeepSpeed restores only the
optimizer's parameters from zero/): they keep the values the rebuilt model starts with. That is
right for lalm, whose frozen weights (Whisper's position table, a frozen encoder or LLM, LoRA's base
weights) never change during a stage and are rebuilt identically from the model config / init_from.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

UNIVERSAL_DIR = "universal"  # <tag_dir>/universal/: deleted together with its checkpoint by prune()
_TMP_DIR = ".universal.tmp"
# One optimizer shard per data-parallel rank (pipeline/tensor parallelism are not used by lalm, so
# mp_rank is always 00); bf16_/fp16_ prefixes are what some optimizers write instead.
_SHARD = re.compile(r"^(?:bf16_|fp16_)?zero_pp_rank_(\d+)_mp_rank_00_optim_states\.pt$")


class UniversalCheckpointError(RuntimeError):
    """A checkpoint that cannot be converted to, or loaded from, the universal format; names the path."""


def saved_world_size(tag_dir: Path) -> int | None:
    """The data-parallel ranks a ZeRO checkpoint was saved on (its optimizer shards), None without
    ZeRO shards (ZeRO-0: the optimizer state is whole, any number of ranks loads it)."""
    ranks = {int(m.group(1)) for m in (_SHARD.match(p.name) for p in Path(tag_dir).iterdir()) if m}
    if not ranks:
        return None
    if ranks != set(range(len(ranks))):
        raise UniversalCheckpointError(f"{tag_dir}: optimizer shards of ranks {sorted(ranks)} (some missing)")
    return len(ranks)


def needs_universal(tag_dir: Path, world_size: int) -> bool:
    """True when the checkpoint's ZeRO shards were written by a different number of ranks."""
    saved = saved_world_size(tag_dir)
    return saved is not None and saved != world_size


def universal_checkpoint_config() -> dict[str, Any]:
    """Merge into the DeepSpeed config of the engine that will load a universal checkpoint.

    DeepSpeed reads it only inside load_checkpoint (engine.load_universal_checkpoint()): it makes the
    engine read <tag>/zero/ instead of the per-rank shards, and skip the module state dict (the
    weights come from zero/<name>/fp32.pt). Only for that load: with it, a regular checkpoint of the
    same world size no longer loads (there is no zero/ folder), and saving is unaffected.
    """
    return {"checkpoint": {"load_universal": True}}


def to_universal(tag_dir: Path, workers: int = 1) -> Path:
    """Convert the DeepSpeed checkpoint in tag_dir into tag_dir/universal (returned). Call it on one
    process only (rank 0, then a barrier). Idempotent: an existing tag_dir/universal is returned as is;
    the conversion is written to tag_dir/.universal.tmp and renamed into place when complete, so a
    crash never leaves a half-written universal/ that a later call would trust.

    workers > 1 lets ds_to_universal extract and merge in parallel processes (large models; each
    merge worker holds whole parameters in memory).
    """
    tag_dir = Path(tag_dir)
    out = tag_dir / UNIVERSAL_DIR
    tmp_root = tag_dir / _TMP_DIR
    if out.is_dir():
        shutil.rmtree(tmp_root, ignore_errors=True)  # left by a crash between rename and cleanup
        return out
    if saved_world_size(tag_dir) is None:
        raise UniversalCheckpointError(
            f"{tag_dir} holds no ZeRO optimizer shards (*zero_pp_rank_*_optim_states.pt): not a ZeRO-1/2/3 "
            "DeepSpeed checkpoint (a ZeRO-0 one loads on any number of ranks without conversion)"
        )
    # For ZeRO-1/2, ds_to_universal lists its input with os.walk, i.e. recursively: model-state files
    # of an earlier, interrupted conversion inside tag_dir would be read as a second model-parallel
    # rank ("Checkpoint model-state file count 2 does not match pp_degree=1 * tp_degree=1"). The
    # leftover is removed first; the listing happens before anything new is written.
    shutil.rmtree(tmp_root, ignore_errors=True)
    # The converter also writes a `latest_universal` file into the PARENT of its output folder: with
    # the output one level down in the temporary folder, that file goes away with it.
    staged = tmp_root / UNIVERSAL_DIR
    command = [
        sys.executable,
        "-m",
        "deepspeed.checkpoint.ds_to_universal",
        "--input_folder",
        str(tag_dir),
        "--output_folder",
        str(staged),
        f"--num_extract_workers={workers}",  # 1: in-process, no process pool
        f"--num_merge_workers={workers}",
        # ZeRO-1/2 only (ZeRO-3's branch ignores it): the converter asserts that the model-states file
        # holds `universal_checkpoint_info`, which DeepSpeed writes only for AutoTP/AutoEP models;
        # this injects {universal_checkpoint_version: 0.2}, all a data-parallel-only model needs.
        "--inject_missing_state",
    ]
    # A separate process: the converter loads every shard at once and keeps module-level state, and
    # a training process (gloo/NCCL group, CUDA context) is no place to fork a process pool from.
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not (staged / "zero" / "optimizer_state.pt").is_file():
        shutil.rmtree(tmp_root, ignore_errors=True)
        raise UniversalCheckpointError(
            f"ds_to_universal failed on {tag_dir} (exit {result.returncode}):\n"
            + (result.stdout[-2000:] + result.stderr[-4000:]).strip()
        )
    os.replace(staged, out)  # atomic on one file system: universal/ is complete or absent
    shutil.rmtree(tmp_root, ignore_errors=True)
    print(f"converted {tag_dir} to a universal checkpoint in {time.monotonic() - started:.1f}s", flush=True)
    return out


def load_universal(engine: Any, tag_dir: Path) -> dict[str, Any]:
    """Load tag_dir/universal into an engine configured with universal_checkpoint_config() (all ranks):
    weights, Adam moments and step, LR schedule, global_steps. Returns DeepSpeed's client state."""
    universal = Path(tag_dir) / UNIVERSAL_DIR
    if not engine.load_universal_checkpoint():
        raise UniversalCheckpointError(
            f"cannot load {universal}: the engine was not built with universal_checkpoint_config()"
        )
    if not (universal / "zero" / "optimizer_state.pt").is_file():
        raise UniversalCheckpointError(f"{universal} is not a converted checkpoint: run to_universal first")
    path, client_state = engine.load_checkpoint(
        str(universal.parent), tag=universal.name, load_optimizer_states=True, load_lr_scheduler_states=True
    )
    if path is None:
        raise UniversalCheckpointError(f"DeepSpeed could not load the universal checkpoint {universal}")
    _repair_optimizer_state(engine, universal)
    return client_state


def _repair_optimizer_state(engine: Any, universal: Path) -> None:
    """Undo two faults of DeepSpeed 0.19.8's ZeRO-3 universal load (stage3.py,
    load_hp_checkpoint_state_from_checkpoint_dir_stage3); no-ops for ZeRO-1/2, which load both right.

    1. Line 3681 gives every param group's Adam state the SAME `step` tensor (read once from group 0,
       line 3664). torch's Adam increments `step` in place, once per group and step, so with N param
       groups (params.parameter_groups: 2, more with optim.lr_scale) the step advances by N per
       optimizer step after a resume and the bias correction is wrong from the first resumed step
       on. Each state gets its own copy.
    2. Line 3687 copies the hyperparameters of param group 0 into EVERY group, so with
       weight_decay > 0 the no-decay groups (biases, norms) would be decayed after a resume, and with
       optim.lr_scale every part would train at group 0's learning rate (`lr` and LambdaLR's
       `initial_lr`). Each group gets all its own saved hyperparameters back.
    """
    optimizer = engine.optimizer.optimizer  # the torch optimizer inside DeepSpeed's ZeRO wrapper
    for state in optimizer.state.values():
        if torch.is_tensor(state.get("step")):
            state["step"] = state["step"].clone()
    saved = torch.load(
        universal / "zero" / "optimizer_state.pt", map_location="cpu", weights_only=False, mmap=True
    )
    saved_groups = saved["param_groups"]
    if len(saved_groups) != len(optimizer.param_groups):
        raise UniversalCheckpointError(
            f"{universal}: {len(saved_groups)} optimizer param groups saved, the engine has "
            f"{len(optimizer.param_groups)} (different trainable parameters?)"
        )
    for group, saved_group in zip(optimizer.param_groups, saved_groups, strict=True):
        group.update({key: value for key, value in saved_group.items() if key != "params"})
