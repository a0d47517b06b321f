"""A step watchdog: a rank stuck in one phase of a step for longer than a timeout ends with an error.

Collective timeouts (torch.distributed's, from trainer.collective_timeout_s) catch a peer that never
joins a collective on gloo; NCCL's own watchdog is not guaranteed to end the process, and a data
loader or file system can hang with no collective involved. So each rank beats at every phase (data,
micro-batch, optimizer step, evaluation, save) and a thread checks the beat: past
trainer.step_timeout_s it prints which rank, step and phase are stuck and every thread's stack, and
ends the process with EXIT_HANG (torchrun then stops the other ranks).
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time

from lalm.training.exits import EXIT_HANG


class StepWatchdog:
    def __init__(self, timeout_s: float, rank: int) -> None:
        self.timeout_s, self.rank = timeout_s, rank
        self._last = time.monotonic()
        self._where = ("start", 0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.timeout_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="lalm-watchdog", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def beat(self, phase: str, step: int) -> None:
        self._last, self._where = time.monotonic(), (phase, step)

    def _watch(self) -> None:
        interval = min(5.0, self.timeout_s / 4)
        while not self._stop.wait(interval):
            stuck = time.monotonic() - self._last
            if stuck > self.timeout_s:
                phase, step = self._where
                print(
                    f"lalm watchdog: rank {self.rank} stuck for {stuck:.0f} s in {phase} of step {step} "
                    f"(trainer.step_timeout_s={self.timeout_s:g}); stacks of every thread follow",
                    file=sys.stderr,
                    flush=True,
                )
                faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
                sys.stderr.flush()
                os._exit(EXIT_HANG)
