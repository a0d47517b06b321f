"""The one training loop, shared by every stage.

A step: fetch this rank's micro-batches for the optimizer step, count their loss units (supervised
tokens or pairs) across all ranks, then forward/backward each micro-batch with its loss SUM divided by
that global count. DeepSpeed averages gradients over ranks, hence the factor `world` below; so the
update is the same for micro-batch 4 x accumulation 1 and micro-batch 1 x accumulation 4.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from lalm.config.train import TrainerConfig
from lalm.data.sampling import LengthGroupedStream, RankBatches, evaluation_batches, record_cost
from lalm.stages.base import Batch, Stage, to_device
from lalm.training.checkpoint import export_final, save_checkpoint
from lalm.training.distributed import all_reduce_sum, device, from_main, rank, world_size
from lalm.training.logging import MetricsLogger


@dataclass
class TrainState:
    """Everything besides DeepSpeed's own state that a resumed run needs (kept explicit on purpose)."""

    step: int = 0
    units_seen: float = 0.0
    examples_seen: int = 0
    dropped: dict[str, int] = field(default_factory=dict)


@dataclass
class DataSources:
    train: Any  # ManifestDataset
    dev: Any
    collator: Any
    seed: int
    num_workers: int = 0
    length_groups: int = 0  # DataConfig.length_groups


class Trainer:
    def __init__(
        self,
        engine: Any,
        stage: Stage,
        processor: Any,
        data: DataSources,
        cfg: TrainerConfig,
        accumulation: int,
        run_dir: Path,
        logger: MetricsLogger,
    ) -> None:
        self.engine, self.stage, self.processor, self.data = engine, stage, processor, data
        self.cfg, self.accumulation, self.run_dir, self.logger = cfg, accumulation, run_dir, logger
        self.state = TrainState()
        self.device = device()

    def _train_batches(self) -> Any:
        stream = self.stage.sample_stream(self.data.train, self.data.seed)
        if self.data.length_groups:
            # Costs may read audio headers; rank 0's are used everywhere, so all ranks sort alike.
            costs = from_main([record_cost(r) for r in self.data.train.records] if rank() == 0 else None)
            stream = LengthGroupedStream(
                stream, costs, self.cfg.global_batch_size, self.data.length_groups, self.data.seed
            )
        sampler = RankBatches(
            stream,
            self.cfg.micro_batch_size,
            self.accumulation,
            rank(),
            world_size(),
            start_step=self.state.step,
        )
        loader = torch.utils.data.DataLoader(
            self.data.train,
            batch_sampler=sampler,
            collate_fn=self.data.collator,
            num_workers=self.data.num_workers,
        )
        return iter(loader)

    def fit(self) -> TrainState:
        batches = self._train_batches()
        while self.state.step < self.cfg.max_steps:
            record = self._optimizer_step([next(batches) for _ in range(self.accumulation)])
            self.state.step += 1
            if self.state.step % self.cfg.log_every == 0 or self.state.step == self.cfg.max_steps:
                self.logger.log(record)
            if self.cfg.eval_every and self.state.step % self.cfg.eval_every == 0:
                self.logger.log(self.evaluate())
            if self.cfg.save_every and self.state.step % self.cfg.save_every == 0:
                save_checkpoint(
                    self.engine, self.run_dir / "checkpoints", self.state.step, asdict(self.state)
                )
        if self.cfg.eval_every and self.state.step % self.cfg.eval_every:
            self.logger.log(self.evaluate())
        export_final(self.engine, self.processor, self.run_dir / "final")
        self.logger.close()
        return self.state

    def _forward(self, batch: Batch, scale: float, sums: defaultdict[str, float]) -> None:
        out = self.stage.forward(self.engine, to_device(batch, self.device))
        self.engine.backward(out.loss * scale, scale_wrt_gas=False)
        self.engine.step()
        sums["loss"] += float(out.loss.detach())
        for key, value in out.metrics.items():
            sums[key] += value

    def _optimizer_step(self, micro_batches: list[Batch]) -> dict[str, Any]:
        start = time.perf_counter()
        lr = self.engine.get_lr()[0]  # the rate this step uses (the schedule advances inside step())
        self.engine.train()
        local = {"units": float(sum(self.stage.count_units(b) for b in micro_batches))}
        units = all_reduce_sum(local, same_keys=True)["units"]
        # DeepSpeed averages gradients over ranks: x world turns the average back into a sum, / units
        # makes it the mean over every unit of the step on every rank.
        scale = world_size() / max(units, 1.0)
        sums: defaultdict[str, float] = defaultdict(float)
        for batch in micro_batches:
            self._guarded(batch, scale, sums)
            sums["tokens"] += float(batch["attention_mask"].sum())
            sums["examples"] += float(len(batch["ids"]))
            for dropped in batch["dropped"]:
                sums[f"dropped/{dropped['reason']}"] += 1
        totals = all_reduce_sum(dict(sums))
        return self._train_record(totals, units, lr, time.perf_counter() - start)

    def _guarded(self, batch: Batch, scale: float, sums: defaultdict[str, float]) -> None:
        try:
            self._forward(batch, scale, sums)
        except Exception as err:
            raise RuntimeError(
                f"rank {rank()} step {self.state.step}: failed on examples {batch['ids']}"
            ) from err

    def _train_record(
        self, totals: dict[str, float], units: float, lr: float, seconds: float
    ) -> dict[str, Any]:
        self.state.units_seen += units
        self.state.examples_seen += int(totals.pop("examples"))
        for key in [k for k in totals if k.startswith("dropped/")]:
            reason = key.split("/", 1)[1]
            self.state.dropped[reason] = self.state.dropped.get(reason, 0) + int(totals.pop(key))
        tokens = totals.pop("tokens")
        record: dict[str, Any] = {"step": self.state.step + 1, "loss": totals.pop("loss") / max(units, 1.0)}
        record.update({k: v / max(units, 1.0) for k, v in totals.items()})
        grad_norm = self.engine.get_global_grad_norm()
        record.update(
            lr=lr,
            tokens=int(tokens),
            **{self.stage.unit: units},
            grad_norm=float(grad_norm) if grad_norm is not None else None,
            tokens_per_s=tokens / max(seconds, 1e-9),
            examples_seen=self.state.examples_seen,
            dropped=sum(self.state.dropped.values()),
        )
        return record

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """Stage loss and metrics on the whole dev manifest (or eval_batches per rank), all ranks."""
        self.engine.eval()
        batches = evaluation_batches(len(self.data.dev), self.cfg.micro_batch_size, rank(), world_size())
        if self.cfg.eval_batches:
            batches = batches[: self.cfg.eval_batches]
        sums: defaultdict[str, float] = defaultdict(float)
        for pairs in batches:
            examples = [{**self.data.dev[i], "weight": 1.0 if real else 0.0} for i, real in pairs]
            batch = self.data.collator(examples)
            sums["dropped"] += len(batch["dropped"])
            out = self.stage.forward(self.engine, to_device(batch, self.device))
            sums["loss"] += float(out.loss)
            sums["units"] += out.units
            for key, value in out.metrics.items():
                sums[key] += value
        totals = all_reduce_sum(dict(sums))
        units, dropped = max(totals.pop("units"), 1.0), int(totals.pop("dropped"))
        self.engine.train()
        return {
            "step": self.state.step,
            **{f"eval/{k}": v / units for k, v in totals.items()},
            "eval/dropped": dropped,
        }
