"""Atomic training checkpoints (for exact resume) and the final Hugging Face export.

A checkpoint is `<run>/checkpoints/step-0000010/`: DeepSpeed's own files (weights, optimizer
partitions, LR schedule, its step counters), `lalm_state.json` (the trainer's TrainState, the data
position and the resolved config), `rng-rank00000.pt` per rank (python, numpy, torch RNG states), and
the marker `COMPLETE`. It is written into `.tmp-step-0000010/`, renamed into place once every rank
has finished, and only then is the marker written: a folder without the marker is never resumed from
(a kill between rename and marker leaves one; resume=auto skips it and says so). Older checkpoints
are deleted only after a newer one is complete (`keep_last`).

<stage>/final/ is what `Qwen2AudioForConditionalGeneration.from_pretrained` and
`AutoProcessor.from_pretrained` load: safetensors weights (ZeRO-3 shards consolidated, LoRA merged),
config, processor. It is written aside and swapped in, so there is never a moment without final/.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lalm.models.training import exported_state
from lalm.training import faults
from lalm.training.distributed import all_reduce_sum, barrier, is_main, rank
from lalm.training.universal import load_universal

COMPLETE = "COMPLETE"
STATE_FILE = "lalm_state.json"
PREFIX = "step-"
TMP_PREFIX = ".tmp-"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written or read; names the path."""


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:07d}"


def rng_file(rank_id: int) -> str:
    return f"rng-rank{rank_id:05d}.pt"


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    step: int
    complete: bool


def list_checkpoints(checkpoints_dir: Path) -> list[CheckpointInfo]:
    """Every `step-N` folder under checkpoints_dir, oldest first (temporary folders are not listed)."""
    found = []
    if checkpoints_dir.is_dir():
        for path in checkpoints_dir.iterdir():
            digits = path.name[len(PREFIX) :]
            if path.is_dir() and path.name.startswith(PREFIX) and digits.isdigit():
                found.append(CheckpointInfo(path, int(digits), (path / COMPLETE).is_file()))
    return sorted(found, key=lambda info: info.step)


def read_state(checkpoint: Path) -> dict[str, Any]:
    """The trainer's part of a complete checkpoint (lalm_state.json)."""
    if not (checkpoint / COMPLETE).is_file():
        raise CheckpointError(f"{checkpoint} is not a complete lalm checkpoint (no {COMPLETE} marker)")
    try:
        state: dict[str, Any] = json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{checkpoint / STATE_FILE} cannot be read: {err}") from err
    return state


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(checkpoint: Path) -> None:
    """This rank's RNG states; on a different number of ranks, a rank without its own file takes
    rank 0's (a resume on other ranks is equal within tolerance, not bitwise, anyway)."""
    path = checkpoint / rng_file(rank())
    if not path.is_file():
        path = checkpoint / rng_file(0)
    state = torch.load(path, weights_only=False)  # our own file, written by save_checkpoint
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_json(path: Path, value: dict[str, Any]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps(value, indent=1, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _agree_ok(failure: BaseException | None, path: Path) -> None:
    """Every rank learns whether any rank failed to write (so none waits in a later collective)."""
    failed = all_reduce_sum({"failed": float(failure is not None)}, same_keys=True)["failed"]
    if failure is not None:
        raise CheckpointError(f"rank {rank()}: could not write checkpoint {path}: {failure}") from failure
    if failed:
        raise CheckpointError(f"could not write checkpoint {path}: another rank failed (see its error)")


def save_checkpoint(
    engine: Any, checkpoints_dir: Path, step: int, state: dict[str, Any], keep_last: int
) -> Path:
    """Write a complete checkpoint of `step` (all ranks call this) and prune older ones."""
    final = checkpoints_dir / checkpoint_name(step)
    tmp = checkpoints_dir / f"{TMP_PREFIX}{final.name}"
    if is_main():
        shutil.rmtree(tmp, ignore_errors=True)  # a leftover of a save that was killed
        checkpoints_dir.mkdir(parents=True, exist_ok=True)
    barrier()
    failure: BaseException | None = None
    try:
        engine.save_checkpoint(str(checkpoints_dir), tag=tmp.name, save_latest=False)
        faults.at("save", step)
        torch.save(_rng_state(), tmp / rng_file(rank()))
        if is_main():
            _write_json(tmp / STATE_FILE, state)
    except OSError as err:
        failure = err
    _agree_ok(failure, tmp)
    if is_main():
        _publish(tmp, final, step)
        prune(checkpoints_dir, keep_last)
    barrier()
    return final


def _publish(tmp: Path, final: Path, step: int) -> None:
    try:
        if final.exists():  # the same step saved again (a resumed run that crashed before moving on)
            shutil.rmtree(final)
        tmp.rename(final)
        faults.at("save_marker", step)
        _write_json(final / COMPLETE, {"step": step})
    except OSError as err:
        raise CheckpointError(f"could not complete checkpoint {final}: {err}") from err


def prune(checkpoints_dir: Path, keep_last: int) -> None:
    """Keep the newest `keep_last` complete checkpoints; incomplete folders older than the newest
    complete one are leftovers of killed saves and go too."""
    infos = list_checkpoints(checkpoints_dir)
    complete = [info for info in infos if info.complete]
    if not complete:
        return
    keep = {info.path for info in complete[-keep_last:]}
    newest = complete[-1].step
    for info in infos:
        if info.path not in keep and (info.complete or info.step < newest):
            shutil.rmtree(info.path, ignore_errors=True)


def load_checkpoint(engine: Any, checkpoint: Path, universal: bool = False) -> dict[str, Any]:
    """Load weights, optimizer and LR schedule into `engine` (all ranks); returns lalm_state.json.
    universal: the checkpoint was saved on another number of ranks (lalm.training.universal)."""
    state = read_state(checkpoint)
    if universal:
        load_universal(engine, checkpoint)
        restore_rng(checkpoint)
        return state
    path, _ = engine.load_checkpoint(
        str(checkpoint.parent),
        tag=checkpoint.name,
        load_optimizer_states=True,
        load_lr_scheduler_states=True,
    )
    if path is None:
        raise CheckpointError(f"DeepSpeed could not load the checkpoint {checkpoint}")
    restore_rng(checkpoint)
    return state


def _full_state_dict(engine: Any) -> dict[str, torch.Tensor] | None:
    """Full weights of the transformers model on rank 0 (None elsewhere), training-only heads left
    out. Collective under ZeRO-3: every rank must call it."""
    if engine.zero_optimization_stage() == 3:
        state = engine._zero3_consolidated_16bit_state_dict()
    else:
        state = engine.module.state_dict() if is_main() else None
    return None if state is None else exported_state(state)


def merge_lora_state(state: dict[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    """A peft LoRA model's full state dict -> the base model's, each adapted weight W + scale·B·A.

    Keys are peft's ("base_model.model.<name>.base_layer.weight", "...lora_A.<adapter>.weight" (r, in),
    "...lora_B.<adapter>.weight" (out, r)); the result has the base model's names. Computed from the
    state dict rather than with peft's merge_and_unload: that merges in place (the trained model would
    drift) and needs whole weights, which ZeRO-3 only has in its consolidated state dict.
    """
    prefix = "base_model.model."
    merged: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if "lora_" in key:
            continue
        name = key[len(prefix) :] if key.startswith(prefix) else key
        merged[name.replace(".base_layer", "")] = value.detach()
        if key.endswith(".base_layer.weight"):
            layer = key[: -len(".base_layer.weight")]
            downs = sorted(k for k in state if k.startswith(f"{layer}.lora_A.") and k.endswith(".weight"))
            weight = value.detach().float()
            for down in downs:
                up = down.replace(".lora_A.", ".lora_B.")
                weight = weight + scale * (state[up].float() @ state[down].float())
            merged[name.replace(".base_layer", "")] = weight.to(value.dtype)
    return merged


def lora_scale(peft_model: Any) -> float:
    """peft's scaling of the adapter's product: alpha / r (alpha / sqrt(r) with rsLoRA)."""
    config = peft_model.peft_config[peft_model.active_adapter]
    return float(config.lora_alpha / (config.r**0.5 if config.use_rslora else config.r))


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported
    (another OS, or a file system such as some network ones that refuses it)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return bool(result == 0)


def _swap_in(tmp: Path, final: Path) -> None:
    """Put `tmp` at `final`: an atomic exchange when final/ exists, so a reader never finds it missing."""
    if final.exists() and _exchange(tmp, final):
        shutil.rmtree(tmp)  # now the previous final/
        return
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def export_final(engine: Any, processor: Any, final_dir: Path) -> None:
    """Write the trained model and its processor as a Hugging Face directory (all ranks call this)."""
    state = _full_state_dict(engine)
    failure: BaseException | None = None
    if is_main():
        module = engine.module.hf  # the transformers model inside lalm.models.training.AudioLanguageModel
        if hasattr(module, "get_base_model"):  # LoRA: adapters folded into the exported weights
            assert state is not None
            state = merge_lora_state(state, lora_scale(module))
            module = module.get_base_model()
        tmp = final_dir.with_name(final_dir.name + ".tmp")
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            module.save_pretrained(tmp, state_dict=state, safe_serialization=True)
            processor.save_pretrained(tmp)
            _swap_in(tmp, final_dir)
        except OSError as err:
            failure = err
    _agree_ok(failure, final_dir)
