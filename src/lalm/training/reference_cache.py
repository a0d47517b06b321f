"""DPO's reference log-probabilities, computed once per run and kept on disk.

The reference model is frozen, so its summed log-probabilities of each pair's chosen and rejected
responses never change. One no-grad pass over the train and dev manifests at the start of the DPO
stage computes them (every rank a share, in lockstep for ZeRO-3); afterwards no step runs the
reference, and its engine is released. The table is written to <run>/reference_logps.pt with the key
it was computed under: the files of the reference checkpoint (weights, tokenizer, processor), the
manifests' contents and the collation settings. A table whose key differs is refused, never used.

TRL offers the same (`precompute_ref_log_probs`) but recomputes it for every job; here a resumed or
requeued job reads the file back, so resume stays exact (the cached values are bit-identical).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lalm.config.train import TrainConfig, manifest_path
from lalm.data.collators import real_ids
from lalm.data.sampling import evaluation_batches
from lalm.stages.base import Batch, to_device
from lalm.training.distributed import all_gather, barrier, from_main, is_main, rank, world_size
from lalm.training.engine import use_bf16
from lalm.training.run_folder import file_sha256

FILE_NAME = "reference_logps.pt"


@dataclass
class CacheRun:
    """Where the cache lives and what its key is made of."""

    run_dir: Path
    reference_dir: str  # the reference checkpoint (init_from)
    manifests: dict[str, str]  # split -> manifest path
    settings: dict[str, Any]  # max_length, prompt_seed, precision: what changes the values
    micro_batch: int
    device: torch.device


def cache_run(cfg: TrainConfig, run_dir: Path, device: torch.device) -> CacheRun:
    """The cache of a DPO run's config: what the trainer (build.py) and
    scripts/precompute_reference.py both read and write, so a precomputed file is the trainer's own."""
    assert cfg.init_from is not None  # validate() guarantees it for stage=dpo
    return CacheRun(
        run_dir,
        cfg.init_from,
        {split: manifest_path(cfg, f"{split}_manifest") for split in ("train", "dev")},
        {
            "max_length": cfg.data.max_length,
            "prompt_seed": cfg.data.prompt_seed,
            "bf16": use_bf16(cfg.trainer.precision),
            # How clips longer than the encoder window are tokenised (lalm.data.features).
            "long_audio_overlap_s": cfg.data.long_audio_overlap_s,
            "max_audio_seconds": cfg.data.max_audio_seconds,
        },
        cfg.trainer.micro_batch_size,
        device,
    )


Table = dict[str, tuple[float, float]]  # example id -> (chosen, rejected) summed log-probs


class StaleReferenceCache(RuntimeError):
    """A cache file exists but was computed for another reference, other data or other settings."""


def files_digest(folder: str | Path) -> str:
    """sha256 over every file of a checkpoint folder (names and contents, in sorted order)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder)}\0{file_sha256(path)}\0".encode())
    return digest.hexdigest()


def cache_key(reference_dir: str, manifests: dict[str, str], settings: dict[str, Any]) -> dict[str, Any]:
    """What the cached values depend on: the reference's files, each split's manifest, the settings
    that change tokenisation (max_length, prompt seed, system prompt)."""
    return {
        "reference": files_digest(reference_dir),
        "manifests": {split: file_sha256(path) for split, path in sorted(manifests.items())},
        "settings": dict(sorted(settings.items())),
    }


def _differences(saved: dict[str, Any], key: dict[str, Any]) -> list[str]:
    names = {"reference": "the reference checkpoint's files", "manifests": "the manifests"}
    out = [names[k] for k in ("reference", "manifests") if saved.get(k) != key[k]]
    for name, value in key["settings"].items():
        if saved.get("settings", {}).get(name) != value:
            out.append(f"{name}: {saved.get('settings', {}).get(name)!r} -> {value!r}")
    return out


def load_table(path: Path, key: dict[str, Any]) -> dict[str, Table] | None:
    """The cached tables per split, None if there is no file; StaleReferenceCache if its key differs."""
    if not path.is_file():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=True)
    differences = _differences(saved["key"], key)
    if differences:
        raise StaleReferenceCache(
            f"{path} holds reference log-probs computed for other inputs ({'; '.join(differences)}); "
            "it would give a wrong DPO loss. Delete it to recompute it, or train into a new output_dir"
        )
    return {split: {i: (c, r) for i, c, r in rows} for split, rows in saved["tables"].items()}


def save_table(path: Path, key: dict[str, Any], tables: dict[str, Table]) -> None:
    """Atomically (tmp + rename): a job killed while writing leaves no half file behind."""
    rows = {split: [(i, c, r) for i, (c, r) in table.items()] for split, table in tables.items()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"key": key, "tables": rows}, tmp)
    os.replace(tmp, path)


def compute_table(
    score: Callable[[Batch], torch.Tensor],
    dataset: Any,
    collator: Any,
    micro_batch: int,
    device: torch.device,
) -> Table:
    """Every example's reference (chosen, rejected) log-probs, all ranks together; every rank gets the
    whole table. `score(batch)` -> (2P,) summed log-probs, rows as the collator orders them. Examples
    the collator drops (bad audio, too long) are not in the table: training drops them too."""
    local: Table = {}
    for pairs in evaluation_batches(len(dataset), micro_batch, rank(), world_size()):
        examples = [{**dataset[i], "weight": 1.0 if real else 0.0} for i, real in pairs]
        batch = collator(examples)
        with torch.no_grad():
            logps = score(to_device(batch, device)).double().cpu()
        count = batch["num_pairs"]
        reals = {str(examples[k]["id"]) for k, (_, real) in enumerate(pairs) if real}
        for k, example_id in enumerate(real_ids(batch)):
            if example_id in reals:
                local[example_id] = (float(logps[k]), float(logps[count + k]))
    table: Table = {}
    for part in all_gather(local):
        table.update(part)
    return table


class WithReference:
    """A DPO dataset whose examples carry their cached `reference_logps` (chosen, rejected)."""

    def __init__(self, dataset: Any, table: Table, split: str) -> None:
        self.dataset, self.table, self.split = dataset, table, split

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:  # records, stage, ... of the wrapped dataset
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int) -> dict[str, Any]:
        example = self.dataset[index]
        if "bad" in example:
            return example  # dropped by the collator anyway
        example_id = str(example["id"])
        if example_id not in self.table:
            raise KeyError(
                f"{self.split} example {example_id} has no cached reference log-probs (it was unreadable "
                f"when the cache was computed?); delete {FILE_NAME} in the run folder to recompute it"
            )
        return {**example, "reference_logps": self.table[example_id]}


def uses_reference_cache(setting: str, trainer: Any, train_pairs: int, run_dir: Path) -> bool:
    """stage.cache_reference: always | never | auto. Auto caches when the run sees every pair at least
    once (the cache pass then costs no more reference forwards than running it live, and the steps
    after it run no reference at all), and whenever the run folder already holds a cache (a resumed
    run keeps computing what it computed before, even with a longer max_steps)."""
    if setting != "auto":
        return setting == "always"
    return (run_dir / FILE_NAME).is_file() or trainer.max_steps * trainer.global_batch_size >= train_pairs


def _read_on_main(path: Path, key: dict[str, Any] | None) -> dict[str, Any]:
    if not is_main():
        return {}
    assert key is not None
    try:
        return {"tables": load_table(path, key)}
    except StaleReferenceCache as err:
        return {"error": str(err)}


def prepare_cache(
    stage: Any, engine: Any, datasets: dict[str, Any], collator: Any, run: CacheRun
) -> dict[str, WithReference]:
    """Read <run>/reference_logps.pt, or compute and write it; every rank gets the datasets wrapped
    with their examples' reference log-probs. StaleReferenceCache (on every rank) for a stale file."""
    path = run.run_dir / FILE_NAME
    key = from_main(cache_key(run.reference_dir, run.manifests, run.settings) if is_main() else None)
    outcome = from_main(_read_on_main(path, key))
    if "error" in outcome:
        raise StaleReferenceCache(outcome["error"])
    tables = outcome["tables"]
    start = time.perf_counter()
    if tables is None:
        tables = {
            split: compute_table(
                lambda b: stage.reference_sequence_logps(engine, b)[0],
                dataset,
                collator,
                run.micro_batch,
                run.device,
            )
            for split, dataset in datasets.items()
        }
        if is_main():
            save_table(path, key, tables)
        barrier()
        verb = f"computed in {time.perf_counter() - start:.1f} s and written to"
    else:
        verb = "read from"
    if is_main():
        sizes = ", ".join(f"{len(t)} {split}" for split, t in tables.items())
        print(f"lalm: reference log-probs ({sizes} pairs) {verb} {path}", flush=True)
    return {split: WithReference(dataset, tables[split], split) for split, dataset in datasets.items()}
