"""One run per stage folder: its lock, the decision to resume or start fresh, and its logs on resume.

All of it runs on rank 0 before any model is built; the decision is broadcast to the other ranks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lalm.training.checkpoint import list_checkpoints, read_state

LOCK_FILE = ".lock"
# Logs that continue across a resume: records past the checkpoint's step are removed.
LOGS = ("metrics.jsonl", "bad_examples.jsonl")
# Settings a resumed run may change: when to log/evaluate/save and how long to run, how the work is
# split over ranks (the data a step sees and its loss normalisation do not depend on it), and
# tracking. Anything else would silently train a different run from the checkpoint on.
RESUMABLE = (
    "output_dir",
    "resume",
    "trainer.max_steps",
    "trainer.save_every",
    "trainer.keep_last",
    "trainer.eval_every",
    "trainer.eval_batches",
    "trainer.log_every",
    "trainer.progress_bar",
    "trainer.wandb",
    "trainer.micro_batch_size",
    "trainer.nonfinite",
    "trainer.max_consecutive_skips",
    "trainer.collective_timeout_s",
    "trainer.step_timeout_s",
    "trainer.activation_checkpointing",
    "data.num_workers",
    "data.max_bad_fraction",
    "deepspeed.overlap_comm",
    "deepspeed.reduce_bucket_size",
    "deepspeed.zero_init",
)
# A lock whose holder cannot be checked (another host) is stale once its heartbeat is this old.
LOCK_STALE_S = 600.0
LOCK_HEARTBEAT_S = 30.0


class RunFolderError(RuntimeError):
    """The run folder cannot be used as asked: locked, already holding a run, or a config mismatch."""


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def _resumable(key: str) -> bool:
    return any(key == allowed or key.startswith(allowed + ".") for allowed in RESUMABLE)


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'key: saved -> current' for every setting outside RESUMABLE that differs."""
    old, new = _flatten(saved), _flatten(current)
    keys = sorted(k for k in set(old) | set(new) if not _resumable(k) and old.get(k) != new.get(k))
    return [f"{k}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}" for k in keys]


@dataclass
class ResumePlan:
    checkpoint: str | None  # the checkpoint folder to load, None to start fresh
    notes: list[str] = field(default_factory=list)  # what was decided and why, printed by rank 0


def _holds_run(run_dir: Path) -> list[str]:
    found = [name for name in (*LOGS, "final") if (run_dir / name).exists()]
    if list_checkpoints(run_dir / "checkpoints"):
        found.append("checkpoints/")
    return found


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def data_fingerprint(manifest: str | Path, examples: int) -> dict[str, Any]:
    """What the train stream's positions depend on besides the config: the manifest's examples."""
    return {"train_examples": examples, "train_sha256": file_sha256(manifest)}


def mixture_fingerprint(sources: Sequence[tuple[str, str | Path, int]]) -> dict[str, Any]:
    """data_fingerprint of a data.mixture, from each source's (name, train manifest, examples): the
    total, a sha256 over every source's, and each source's own count and sha256."""
    per_source = {name: {"examples": n, "sha256": file_sha256(path)} for name, path, n in sources}
    combined = hashlib.sha256("".join(f"{k}\0{v['sha256']}\0" for k, v in per_source.items()).encode())
    return {
        "train_examples": sum(n for _, _, n in sources),
        "train_sha256": combined.hexdigest(),
        "train_sources": per_source,
    }


def _source_changes(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The mixture sources whose number of examples differs between two fingerprints."""
    old, new = saved.get("train_sources") or {}, now.get("train_sources") or {}
    return [
        f"{name}: {old.get(name, {}).get('examples', 0)} -> {new.get(name, {}).get('examples', 0)}"
        for name in sorted(set(old) | set(new))
        if old.get(name, {}).get("examples") != new.get(name, {}).get("examples")
    ]


def _check_compatible(checkpoint: Path, config: dict[str, Any], fingerprint: dict[str, Any] | None) -> None:
    state = read_state(checkpoint)
    saved, now = state.get("data_fingerprint"), fingerprint
    if saved and now and saved["train_examples"] != now["train_examples"]:
        raise RunFolderError(
            f"cannot resume from {checkpoint}: the train manifest now has {now['train_examples']} examples, "
            f"the checkpoint's run had {saved['train_examples']}: every data position would shift. "
            "Restore the manifest or train into a new output_dir"
        )
    changed = _source_changes(saved, now) if saved and now else []
    if changed:
        raise RunFolderError(
            f"cannot resume from {checkpoint}: data.mixture's sources changed size (examples, checkpoint "
            f"-> now: {', '.join(changed)}): every data position would shift. Restore the manifests or "
            "train into a new output_dir"
        )
    differences = config_differences(state["config"], config)
    if differences:
        raise RunFolderError(
            f"cannot resume from {checkpoint}: the config differs in settings that change the run:\n  "
            + "\n  ".join(differences)
            + "\nRevert them, or train into a new output_dir (the keys a resume may change: "
            + ", ".join(RESUMABLE)
            + ")"
        )


def plan_resume(
    run_dir: Path, resume: str, config: dict[str, Any], fingerprint: dict[str, Any] | None = None
) -> ResumePlan:
    """resume=auto|never|<checkpoint path>, decided from what run_dir holds (see TrainConfig.resume);
    a checkpoint is only resumed with the same config (up to RESUMABLE) and data (`fingerprint`)."""
    if resume not in ("auto", "never"):
        checkpoint = Path(resume)
        _check_compatible(checkpoint, config, fingerprint)
        return ResumePlan(str(checkpoint), [f"resuming from {checkpoint} (resume={resume})"])
    held = _holds_run(run_dir)
    if resume == "never":
        if held:
            raise RunFolderError(
                f"resume=never: {run_dir} already holds a run ({', '.join(held)}); "
                "choose a new output_dir, or resume=auto to continue it"
            )
        return ResumePlan(None)
    infos = list_checkpoints(run_dir / "checkpoints")
    complete = [info for info in infos if info.complete]
    notes = [
        f"skipping incomplete checkpoint {info.path} (no COMPLETE marker: its save was interrupted)"
        for info in infos
        if not info.complete and (not complete or info.step > complete[-1].step)
    ]
    if complete:
        _check_compatible(complete[-1].path, config, fingerprint)
        return ResumePlan(str(complete[-1].path), [*notes, f"resuming from {complete[-1].path}"])
    if held:
        notes.append(f"no complete checkpoint in {run_dir}: starting fresh (earlier logs are kept aside)")
    return ResumePlan(None, notes)


def prepare_logs(run_dir: Path, resume_step: int) -> None:
    """Resume: keep each log's records up to resume_step (rewritten atomically); a fresh start moves an
    earlier run's logs aside (`metrics.<time>.jsonl`), so nothing is lost and nothing interleaves."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in LOGS:
        path = run_dir / name
        if not path.is_file():
            continue
        if resume_step == 0:
            path.rename(path.with_name(f"{path.stem}.{stamp}{path.suffix}"))
            continue
        kept = [
            line
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= resume_step
        ]
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(tmp, path)
    if resume_step == 0:
        for info in list_checkpoints(run_dir / "checkpoints"):  # incomplete ones: nothing resumable
            shutil.rmtree(info.path, ignore_errors=True)


def _holder() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "started": time.time(),
    }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(holder: dict[str, Any], age_s: float) -> str | None:
    """Why a lock is stale, or None if its holder may be alive."""
    me = _holder()
    if holder.get("slurm_job_id") and holder["slurm_job_id"] == me["slurm_job_id"]:
        return f"it is this SLURM job's own earlier run (job {holder['slurm_job_id']}, requeued)"
    if holder.get("host") == me["host"]:
        return None if _pid_alive(int(holder.get("pid", -1))) else f"pid {holder.get('pid')} is gone"
    if age_s > LOCK_STALE_S:
        return f"its heartbeat is {age_s:.0f} s old"
    return None


class RunLock:
    """<run_dir>/.lock while a job trains into run_dir (rank 0 holds it; refreshed every 30 s)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_FILE
        self._stop = threading.Event()
        self.note: str | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(_holder(), handle)
            threading.Thread(target=self._heartbeat, name="lalm-lock", daemon=True).start()
            return
        raise RunFolderError(f"could not take the lock {self.path}")

    def _take_over_if_stale(self) -> None:
        try:
            holder = json.loads(self.path.read_text())
            age = time.time() - self.path.stat().st_mtime
        except (OSError, ValueError):
            holder, age = {}, LOCK_STALE_S + 1  # unreadable: a writer died mid-write
        why = _stale(holder, age)
        if why is None:
            raise RunFolderError(
                f"{self.path.parent} is in use by another job: host {holder.get('host')}, "
                f"pid {holder.get('pid')}, SLURM job {holder.get('slurm_job_id')}. Wait for it, or train "
                f"into another output_dir; if that job is dead, delete {self.path}"
            )
        self.note = f"taking over the stale lock {self.path}: {why}"
        self.path.unlink(missing_ok=True)

    def _heartbeat(self) -> None:
        while not self._stop.wait(LOCK_HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        self._stop.set()
        try:
            if json.loads(self.path.read_text()).get("pid") == os.getpid():
                self.path.unlink()
        except (OSError, ValueError):
            pass
