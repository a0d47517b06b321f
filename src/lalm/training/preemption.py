"""Preemption: a signal only sets a flag; the trainer acts on it at the next step boundary.

SIGTERM (what schedulers send before they kill, and what torchrun forwards to its workers) and
SIGUSR1 (SLURM's `--signal=USR1@120` warning) are caught. The ranks agree on the flag with the
step's all-reduce, every rank saves, and the job exits with EXIT_REQUEUE.

The launcher's death counts as a stop request too. torchrun starts its workers in their own process
sessions, so a kill -9 of torchrun, or a SIGUSR1 (which kills torchrun: it has no handler for it),
reaches no worker: they would train on as orphans and write final/. Each worker asks the kernel for
SIGTERM when its parent dies (Linux prctl PR_SET_PDEATHSIG) and also compares its parent pid at
every step, so it saves a checkpoint and exits instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
_PR_SET_PDEATHSIG = 1


class StopRequest:
    """Set by a stop signal or by the launcher's death; read by the trainer at step boundaries."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._parent = os.getppid()
        self._watch_parent = "TORCHELASTIC_RUN_ID" in os.environ  # launched by torchrun

    def install(self) -> None:
        """Catch the stop signals (main thread only) and ask for SIGTERM if the launcher dies."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)
        if self._watch_parent and sys.platform.startswith("linux"):
            # Without prctl the per-step parent check below still notices, one step later.
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))

    def uninstall(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.reason is None:
            self.reason = signal.Signals(signum).name
            print(
                f"lalm: received {self.reason}; saving at the end of this step", file=sys.stderr, flush=True
            )

    def requested(self) -> bool:
        if self.reason is None and self._watch_parent and os.getppid() != self._parent:
            self.reason = "launcher died"
        return self.reason is not None
