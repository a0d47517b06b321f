"""Rank-0 logging: a progress bar, <stage>/metrics.jsonl (one object per optimizer step), wandb."""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lalm.config.train import WandbConfig


class MetricsLogger:
    def __init__(
        self,
        run_dir: Path,
        total_steps: int,
        start_step: int,
        wandb_cfg: WandbConfig,
        config: dict[str, Any],
        enabled: bool,
        progress_bar: bool = True,
    ) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self._wandb = None
        self._bar = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        if progress_bar:
            self._bar = tqdm(total=total_steps, initial=start_step, desc=run_dir.name, dynamic_ncols=True)
        if wandb_cfg.mode != "disabled":
            import wandb

            os.environ.setdefault("WANDB_SILENT", "true")
            self._wandb = wandb.init(
                project=wandb_cfg.project,
                name=wandb_cfg.name or run_dir.parent.name,
                mode=wandb_cfg.mode,  # type: ignore[arg-type]  # validated: offline|online|disabled
                # A resumed run continues the same wandb run (its id is kept in the run folder).
                id=_wandb_run_id(run_dir, start_step),
                resume="allow",
                dir=str(run_dir),
                config=config,
                reinit="finish_previous",
            )

    def log(self, record: dict[str, Any]) -> None:
        """Append one record ({"step": ..., ...}); train records also advance the bar."""
        if not self.enabled:
            return
        record = {k: strict_json_value(v) for k, v in record.items()}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, allow_nan=False) + "\n")
        if self._wandb is not None:
            self._wandb.log(
                {k: v for k, v in record.items() if isinstance(v, (int, float))}, step=record["step"]
            )
        if self._bar is not None and "lr" in record:
            self._bar.update(record["step"] - self._bar.n)
            shown = {k: record[k] for k in ("loss", "lr", "tokens_per_s") if k in record}
            self._bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items()})

    def log_lines(self, name: str, records: list[dict[str, Any]]) -> None:
        """Append records to another JSONL file of the run (e.g. bad_examples.jsonl)."""
        if not self.enabled or not records:
            return
        with (self.path.parent / name).open("a", encoding="utf-8") as handle:
            for record in records:
                clean = {k: strict_json_value(v) for k, v in record.items()}
                handle.write(json.dumps(clean, allow_nan=False, ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def _wandb_run_id(run_dir: Path, start_step: int) -> str:
    path = run_dir / "wandb_run_id"
    if start_step > 0 and path.is_file():
        return path.read_text().strip()
    run_id = uuid.uuid4().hex[:8]  # wandb's own ids are 8 lowercase letters and digits
    path.write_text(run_id + "\n")
    return run_id


def strict_json_value(value: Any) -> Any:
    """NaN and infinities become null: bare NaN/Infinity is not JSON, and readers choke on it."""
    return None if isinstance(value, float) and not math.isfinite(value) else value
