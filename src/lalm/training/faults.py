"""Fault injection for the reliability tests: LALM_FAULTS="kind@step[:rank],..." (unset in real runs).

Kinds, each firing once at the named step (1-based, the step being computed; on every rank unless
`:rank` is given):
- nan_loss   the rank's loss of that step becomes NaN (the non-finite guard must skip the step);
- sleep      the rank sleeps up to 60 s at the start of the step, waking early on a stop signal (a
             test kills or signals the job meanwhile);
- hang       the rank sleeps for good at the start of the step (the step watchdog must fire);
- sigusr1    the rank sends itself SIGUSR1 at the start of the step (preemption seen by one rank);
- enospc     the checkpoint save of that step fails with "No space left on device" on that rank;
- kill_save  the process SIGKILLs itself while saving that step, after DeepSpeed wrote its files;
- kill_marker the process SIGKILLs itself after the checkpoint folder was renamed into place but
             before its COMPLETE marker was written.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Callable

from lalm.training.distributed import rank

_POINTS = {  # where in the code each kind fires
    "nan_loss": "loss",
    "sleep": "step",
    "hang": "step",
    "sigusr1": "step",
    "enospc": "save",
    "kill_save": "save",
    "kill_marker": "save_marker",
}


def _parse(spec: str) -> list[tuple[str, int, int | None]]:
    faults = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        kind, _, where = item.partition("@")
        step, _, on_rank = where.partition(":")
        if kind not in _POINTS or not step.isdigit():
            raise ValueError(f"LALM_FAULTS: cannot read {item!r}; kinds: {sorted(_POINTS)}")
        faults.append((kind, int(step), int(on_rank) if on_rank else None))
    return faults


def _active(point: str, step: int) -> list[str]:
    spec = os.environ.get("LALM_FAULTS", "")
    if not spec:
        return []
    return [
        kind
        for kind, at_step, on_rank in _parse(spec)
        if _POINTS[kind] == point and at_step == step and on_rank in (None, rank())
    ]


def loss_is_poisoned(step: int) -> bool:
    return "nan_loss" in _active("loss", step)


def at(point: str, step: int, stop_requested: Callable[[], bool] = lambda: False) -> None:
    """Fire the faults configured for `point` at `step` on this rank (nothing when none are)."""
    for kind in _active(point, step):
        if kind == "sleep":
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not stop_requested():
                time.sleep(0.05)
        elif kind == "hang":
            while True:
                time.sleep(1)
        elif kind == "sigusr1":
            os.kill(os.getpid(), signal.SIGUSR1)
        elif kind == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        elif kind in ("kill_save", "kill_marker"):
            os.kill(os.getpid(), signal.SIGKILL)
