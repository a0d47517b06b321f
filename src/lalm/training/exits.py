"""Process exit codes of scripts/train.py, so a batch script can tell why a job ended.

0 is success and 1 an error (a traceback says which). The others follow sysexits.h where one fits.
"""

from __future__ import annotations

import os
import sys

EXIT_OK = 0
# A preemption signal (SIGTERM/SIGUSR1) or the launcher's death was handled: every rank saved a
# complete checkpoint at a step boundary. Requeue the job; resume=auto continues from it.
EXIT_REQUEUE = 75  # EX_TEMPFAIL
# More than data.max_bad_fraction of the manifest was bad (<run>/bad_examples.jsonl lists them).
EXIT_BAD_DATA = 65  # EX_DATAERR
# Training diverged: more than trainer.max_consecutive_skips non-finite steps in a row, a non-finite
# step with trainer.nonfinite=abort, or non-finite weights at the end. No final/ is exported.
EXIT_DIVERGED = 70  # EX_SOFTWARE
# The config or the data failed validation before anything was built; nothing was written.
EXIT_CONFIG = 78  # EX_CONFIG
# The step watchdog fired: a rank was stuck in one step (a collective, the data loader) for longer
# than trainer.step_timeout_s. Stacks of every thread were printed to stderr.
EXIT_HANG = 124  # as timeout(1)
# Another job holds the run folder's lock.
EXIT_LOCKED = 73  # EX_CANTCREAT


class TrainingExit(SystemExit):
    """Ends scripts/train.py with `code`; the message is printed to stderr when it is raised, so it
    reaches the job log whoever catches it (SystemExit passes through Hydra's error handling)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code)
        self.message = message
        where = f"rank {os.environ['RANK']}: " if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
        print(f"lalm: {where}{message} (exit code {code})", file=sys.stderr, flush=True)
