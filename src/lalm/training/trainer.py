"""The one training loop, shared by every stage.

A step: fetch this rank's micro-batches, count their loss units (supervised tokens or pairs) across
all ranks, forward/backward each micro-batch with its loss SUM divided by that global count, agree
across ranks on what happened (sums, non-finite loss, stop request) in one all-reduce, then apply or
skip the optimizer update. DeepSpeed averages gradients over ranks, hence the factor `world` below;
so the update is the same for micro-batch 4 x accumulation 1 and micro-batch 1 x accumulation 4.
"""

from __future__ import annotations

import resource
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lalm.config.train import TrainerConfig
from lalm.data.sampling import LengthGroupedStream, RankBatches, evaluation_batches, record_cost
from lalm.stages.base import Batch, Stage, to_device
from lalm.training import faults
from lalm.training.checkpoint import export_final, load_checkpoint, save_checkpoint
from lalm.training.distributed import (
    all_gather,
    all_reduce_sum,
    any_rank,
    device,
    from_main,
    rank,
    world_size,
)
from lalm.training.engine import StepGate
from lalm.training.exits import EXIT_BAD_DATA, EXIT_DIVERGED, EXIT_REQUEUE, TrainingExit
from lalm.training.flops import GPU_PEAK_FLOPS, StepFlops
from lalm.training.logging import MetricsLogger
from lalm.training.preemption import StopRequest
from lalm.training.run_folder import RunLock
from lalm.training.state import TrainState
from lalm.training.watchdog import StepWatchdog

__all__ = ["DataSources", "TrainState", "Trainer"]

PREFETCH = 4  # batches each DataLoader worker collates ahead (torch's default is 2)


def _peak_memory(device: torch.device) -> dict[str, float]:
    """This rank's peak host memory (resident set) and, on a GPU, peak allocated memory, in MiB."""
    peaks = {"host_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # Linux: KiB
    if device.type == "cuda":
        peaks["gpu_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return peaks


class _Weighted:
    """The dev set indexed by (index, real): evaluation pads its last batches with weight-0 repeats."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, bool]) -> dict[str, Any]:
        index, real = key
        return {**self.dataset[index], "weight": 1.0 if real else 0.0}


@dataclass
class DataSources:
    train: Any  # ManifestDataset
    dev: Any
    collator: Any
    seed: int
    num_workers: int = 0
    length_groups: int = 0  # DataConfig.length_groups
    max_bad_fraction: float = 1.0  # DataConfig.max_bad_fraction
    mixture: Any = None  # lalm.data.mixture.Mixture with data.mixture: the train stream draws by source


@dataclass
class RunContext:
    """Where a run writes, and what its checkpoints must record to be resumed."""

    run_dir: Path
    logger: MetricsLogger
    config: dict[str, Any] = field(default_factory=dict)  # the resolved TrainConfig, for resume checks
    data_fingerprint: dict[str, Any] = field(default_factory=dict)  # the train manifest's (run_folder)
    lock: RunLock | None = None  # rank 0 holds the folder's lock while the run lasts


class Trainer:
    def __init__(
        self,
        engine: Any,
        stage: Stage,
        processor: Any,
        data: DataSources,
        cfg: TrainerConfig,
        accumulation: int,
        run: RunContext,
        flops: StepFlops | None = None,
    ) -> None:
        self.engine, self.stage, self.processor, self.data = engine, stage, processor, data
        self.cfg, self.accumulation, self.run = cfg, accumulation, run
        self.flops = flops  # model FLOP rates (lalm.training.flops), for model_tflops_per_s and mfu
        self.state = TrainState()
        self.device = device()
        self.gate = StepGate(engine)
        self.stop = StopRequest()
        self.watchdog = StepWatchdog(cfg.step_timeout_s, rank())
        self._eval_loader: torch.utils.data.DataLoader | None = None
        self._eval_iterator: Any = None

    # ------------------------------------------------------------------ the loop

    def fit(self) -> TrainState:
        self.stop.install()
        self.watchdog.start()
        try:
            self._train()
            self._finish()
        finally:
            self.watchdog.stop()
            self.stop.uninstall()
            self.run.logger.close()
            if self.run.lock is not None:
                self.run.lock.release()
        return self.state

    def _train(self) -> None:
        batches = self._train_batches()
        if self.cfg.eval_every and self.data.num_workers:
            self._eval_iterator = self._evaluation_batches()  # forks the dev workers now (see there)
        while self.state.step < self.cfg.max_steps:
            step = self.state.step + 1
            self.watchdog.beat("data", step)
            faults.at("step", step, self.stop.requested)
            waited = time.perf_counter()
            micro_batches = [next(batches) for _ in range(self.accumulation)]
            waited = time.perf_counter() - waited  # this rank's wait for its DataLoader (workers prefetch)
            totals, applied = self._optimizer_step(micro_batches)
            totals["data_wait_s"] = waited
            self._after_step(totals, applied)
            if totals["stop"] > 0:
                self._preempt()

    def _after_step(self, totals: dict[str, float], applied: bool) -> None:
        """Count the step, log it, check the guards, then evaluate and save on their cadence."""
        self.state.advance(totals, applied)
        step = self.state.step
        if step % self.cfg.log_every == 0 or step == self.cfg.max_steps or not applied:
            self.run.logger.log(self._train_record(totals, applied))
        self._check_bad_fraction()
        self._check_divergence(applied)
        if self.cfg.eval_every and step % self.cfg.eval_every == 0:
            self.run.logger.log(self.evaluate())
        if self.cfg.save_every and step % self.cfg.save_every == 0:
            self.save()

    def _finish(self) -> None:
        if self.cfg.eval_every and self.state.step % self.cfg.eval_every:
            self.run.logger.log(self.evaluate())
        if self.cfg.save_every and self.state.step % self.cfg.save_every:
            self.save()  # so a rerun (resume=auto) finds the finished run and only exports again
        if not self._weights_finite():
            raise TrainingExit(
                EXIT_DIVERGED, f"step {self.state.step}: the weights are not finite; no final/"
            )
        self.watchdog.beat("export", self.state.step)
        export_final(self.engine, self.processor, self.run.run_dir / "final")

    # ------------------------------------------------------------------ one optimizer step

    def _optimizer_step(self, micro_batches: list[Batch]) -> tuple[dict[str, float], bool]:
        start = time.perf_counter()
        lr = self.engine.get_lr()[0]  # the rate this step uses (the schedule advances inside step())
        self.engine.train()
        local = {"units": float(sum(self.stage.count_units(b) for b in micro_batches))}
        self.watchdog.beat("all-reduce of the loss units", self.state.step + 1)
        units = all_reduce_sum(local, same_keys=True)["units"]
        # DeepSpeed averages gradients over ranks: x world turns the average back into a sum, / units
        # makes it the mean over every unit of the step on every rank.
        sums = self._forward_backward(micro_batches, world_size() / max(units, 1.0))
        sums["nonfinite"] = (~torch.isfinite(sums["loss"])).double()
        sums["stop"] = float(self.stop.requested())
        totals = all_reduce_sum(sums)  # the step's one host sync: device metrics are read here
        self.watchdog.beat("optimizer step", self.state.step + 1)
        applied = self.gate.step(skip=totals["nonfinite"] > 0)
        totals.update(units=units, lr=lr, seconds=time.perf_counter() - start)
        self._write_dropped(micro_batches, totals, "train")
        return totals, applied

    def _forward_backward(self, micro_batches: list[Batch], scale: float) -> dict[str, Any]:
        """Forward and backward every micro-batch; the update itself is left to the boundary step.
        Loss and stage metrics are summed on the device (float64); counts come from the host batch."""
        step = self.state.step + 1
        sums: dict[str, Any] = defaultdict(float)
        sums["loss"] = torch.zeros((), dtype=torch.float64, device=self.device)
        for index, batch in enumerate(micro_batches):
            self.watchdog.beat("forward/backward", step)
            try:
                out = self.stage.forward(self.engine, to_device(batch, self.device))
                loss = out.loss * float("nan") if faults.loss_is_poisoned(step) else out.loss
                self.engine.backward(loss * scale, scale_wrt_gas=False)
                if index < len(micro_batches) - 1:
                    self.engine.step()  # DeepSpeed counts micro-steps; no update before the boundary
            except Exception as err:
                raise RuntimeError(f"rank {rank()} step {step}: failed on examples {batch['ids']}") from err
            sums["loss"] = sums["loss"] + loss.detach().double()
            for key, value in out.metrics.items():
                sums[key] = sums[key] + value
            placeholders = int(batch.get("placeholders", 0))
            sums["tokens"] += float(batch["attention_mask"].sum()) - float(batch.get("placeholder_tokens", 0))
            sums["examples"] += float(len(batch["ids"]) - placeholders)
            sums["positions"] += float(batch["input_ids"].numel())  # what the LLM computes, pads included
            if "feature_attention_mask" in batch:  # each clip once (DPO pairs share theirs)
                sums["mel_frames"] += float(batch["feature_attention_mask"].sum())
            for dropped in batch["dropped"]:
                sums[f"dropped/{dropped['reason']}"] += 1
            for name, count in batch.get("mix", {}).items():  # data.mixture: examples per source
                sums[f"mix/{name}"] += float(count)
        return dict(sums)

    def _train_record(self, totals: dict[str, float], applied: bool) -> dict[str, Any]:
        units = max(totals["units"], 1.0)
        grad_norm = self.engine.get_global_grad_norm() if applied else None
        record: dict[str, Any] = {"step": self.state.step, "loss": totals["loss"] / units}
        skip = {"units", "lr", "seconds", "loss", "tokens", "examples", "nonfinite", "stop"}
        skip |= {
            "data_wait_s",
            "positions",
            "mel_frames",
        }  # counts and times, reported below in their own form
        record.update(
            {
                k: v / units
                for k, v in totals.items()
                if k not in skip and not k.startswith(("dropped/", "mix/"))
            }
        )
        record.update({k: int(v) for k, v in totals.items() if k.startswith(("dropped/", "mix/"))})
        record.update(
            lr=totals["lr"],
            tokens=int(totals["tokens"]),
            packing_efficiency=totals["tokens"] / max(totals.get("positions", 0.0), 1.0),
            **{self.stage.unit: totals["units"]},
            grad_norm=float(grad_norm) if grad_norm is not None else None,
            tokens_per_s=totals["tokens"] / max(totals["seconds"], 1e-9),
            # Wall clock includes this rank's wait for data; the gap to tokens_per_s is the data cost.
            wall_tokens_per_s=totals["tokens"]
            / max(totals["seconds"] + totals.get("data_wait_s", 0.0), 1e-9),
            data_wait_fraction=totals.get("data_wait_s", 0.0)
            / max(totals["seconds"] + totals.get("data_wait_s", 0.0), 1e-9),
            examples_seen=self.state.examples_seen,
            **self._model_flops(totals),
            **_peak_memory(self.device),
            dropped=sum(self.state.dropped.values()),
            skipped=not applied,
        )
        return record

    def _model_flops(self, totals: dict[str, float]) -> dict[str, float]:
        """Model TFLOP/s per rank by PERF.md's formula, and on a GPU the MFU against GPU_PEAK_FLOPS."""
        if self.flops is None:
            return {}
        flops = self.flops.of(totals["tokens"], totals.get("mel_frames", 0.0))
        per_rank = flops / max(totals["seconds"], 1e-9) / world_size()
        out = {"model_tflops_per_s": per_rank / 1e12}
        if self.device.type == "cuda":
            out["mfu"] = per_rank / GPU_PEAK_FLOPS
        return out

    # ------------------------------------------------------------------ guards

    def _check_divergence(self, applied: bool) -> None:
        if applied:
            return
        state, limit = self.state, self.cfg.max_consecutive_skips
        if self.cfg.nonfinite == "abort" or state.consecutive_skips > limit:
            why = (
                "trainer.nonfinite=abort"
                if self.cfg.nonfinite == "abort"
                else f"{state.consecutive_skips} non-finite steps in a row (trainer.max_consecutive_skips={limit})"
            )
            raise TrainingExit(
                EXIT_DIVERGED,
                f"training diverged at step {state.step}: the loss or gradient norm was not finite "
                f"({why}); no final/ was exported. Lower optim.lr, check the data, or resume from "
                f"{self.run.run_dir / 'checkpoints'}",
            )
        print(f"lalm: step {state.step}: non-finite loss or gradient norm, update skipped", flush=True)

    def _check_bad_fraction(self) -> None:
        size = len(self.data.train)
        if len(self.state.bad_ids) <= self.data.max_bad_fraction * size:
            return
        raise TrainingExit(
            EXIT_BAD_DATA,
            f"{len(self.state.bad_ids)} of the {size} training examples are bad, more than "
            f"data.max_bad_fraction={self.data.max_bad_fraction}: see {self.run.run_dir / 'bad_examples.jsonl'}"
            f" (first: {', '.join(self.state.bad_ids[:10])})",
        )

    def _write_dropped(self, batches: list[Batch], totals: dict[str, float], split: str) -> int:
        """Name every skipped example in bad_examples.jsonl (gathered only when some rank skipped one);
        returns how many there were (dev: distinct examples, as evaluation pads with repeats)."""
        if not any(v for k, v in totals.items() if k.startswith("dropped")):
            return 0
        step = self.state.step + (1 if split == "train" else 0)
        local = [{"step": step, "split": split, "rank": rank(), **d} for b in batches for d in b["dropped"]]
        entries = [entry for part in all_gather(local) for entry in part]
        if split == "train":
            self.state.add_bad([entry["id"] for entry in entries])
        else:
            entries = list({entry["id"]: entry for entry in entries}.values())
        self.run.logger.log_lines("bad_examples.jsonl", entries)
        return len(entries)

    def _weights_finite(self) -> bool:
        """Every rank checks its own (ZeRO-3: partitioned) weights; one non-finite anywhere is enough."""
        finite = True
        for param in self.engine.module.parameters():
            tensor = getattr(param, "ds_tensor", param)
            finite = finite and bool(torch.isfinite(tensor).all())
        return not any_rank(not finite)

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "train_state": self.state.state_dict(),
            # What the data position depends on: sample k of the stream is a function of these.
            "data_position": {
                "next_sample": self.state.step * self.cfg.global_batch_size,
                "seed": self.data.seed,
                "global_batch_size": self.cfg.global_batch_size,
                "length_groups": self.data.length_groups,
            },
            "data_fingerprint": self.run.data_fingerprint,
            "world_size": world_size(),
            "config": self.run.config,
        }

    def save(self) -> Path:
        self.watchdog.beat("save", self.state.step)
        return save_checkpoint(
            self.engine,
            self.run.run_dir / "checkpoints",
            self.state.step,
            self.checkpoint_state(),
            self.cfg.keep_last,
        )

    def restore(self, checkpoint: Path, universal: bool = False) -> None:
        """Continue from `checkpoint`: weights, optimizer, schedule, TrainState and RNG states."""
        state = load_checkpoint(self.engine, checkpoint, universal)
        self.state.load_state_dict(state["train_state"])

    def _preempt(self) -> None:
        path = self.save() if not self.cfg.save_every or self.state.step % self.cfg.save_every else None
        path = path or self.run.run_dir / "checkpoints"
        raise TrainingExit(
            EXIT_REQUEUE,
            f"stop requested ({self.stop.reason or 'on another rank'}): saved step {self.state.step} "
            f"in {path}; rerun the same command (resume=auto) to continue",
        )

    # ------------------------------------------------------------------ data and evaluation

    def _train_batches(self) -> Any:
        stream = self.stage.sample_stream(self.data.train, self.data.seed)
        if self.data.mixture is not None:
            stream = self.data.mixture.stream(stream, self.data.seed)
        if self.data.length_groups:
            # Costs may read audio headers; rank 0's are used everywhere, so all ranks sort alike.
            costs = from_main([record_cost(r) for r in self.data.train.records] if rank() == 0 else None)
            stream = LengthGroupedStream(
                stream, costs, self.cfg.global_batch_size, self.data.length_groups, self.data.seed
            )
        # Seek: the stream's sample k is a pure function of (seed, k), so nothing is replayed.
        sampler = RankBatches(
            stream,
            self.cfg.micro_batch_size,
            self.accumulation,
            rank(),
            world_size(),
            start_step=self.state.step,
            positions=getattr(self.data.train, "augment", None) is not None,
        )
        return iter(self._loader(self.data.train, sampler))

    def _loader(
        self, dataset: Any, batch_sampler: Any, persistent: bool = False
    ) -> torch.utils.data.DataLoader:
        """Collation in `data.num_workers` worker processes, `PREFETCH` batches ahead each, into pinned
        memory on a GPU (so to_device's copies are asynchronous)."""
        workers = self.data.num_workers
        return torch.utils.data.DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            collate_fn=self.data.collator,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=PREFETCH if workers else None,
            persistent_workers=persistent and workers > 0,
        )

    def _evaluation_batches(self) -> Any:
        """The dev batches, collated by persistent workers. They are forked once, when training starts
        (next to the train loader's), not at the first evaluation: forking a process whose other
        threads are busy mid-training can deadlock the child (seen with gloo's and OpenMP's threads)."""
        if self._eval_loader is None:
            batches = evaluation_batches(len(self.data.dev), self.cfg.micro_batch_size, rank(), world_size())
            if self.cfg.eval_batches:
                batches = batches[: self.cfg.eval_batches]
            self._eval_loader = self._loader(_Weighted(self.data.dev), batches, persistent=True)
        if self._eval_iterator is not None:  # started with the training: its workers are prefetching
            iterator, self._eval_iterator = self._eval_iterator, None
            return iterator
        return iter(self._eval_loader)

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """Stage loss and metrics on the whole dev manifest (or eval_batches per rank), all ranks."""
        self.engine.eval()
        sums: dict[str, Any] = defaultdict(float)
        collated = []
        for batch in self._evaluation_batches():
            self.watchdog.beat("evaluation", self.state.step)
            collated.append({"dropped": batch["dropped"]})
            sums["dropped"] += len(batch["dropped"])
            out = self.stage.forward(self.engine, to_device(batch, self.device))
            sums["loss"] = sums["loss"] + out.loss.detach().double()
            sums["units"] = sums["units"] + out.units
            for key, value in out.metrics.items():
                sums[key] = sums[key] + value
        totals = all_reduce_sum(dict(sums))
        dropped = self._write_dropped(collated, totals, "dev")
        units = max(totals.pop("units"), 1.0)
        totals.pop("dropped")
        self.engine.train()
        return {
            "step": self.state.step,
            **{f"eval/{k}": v / units for k, v in totals.items()},
            "eval/dropped": dropped,
        }
