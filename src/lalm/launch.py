"""torchrun for preemptible batch jobs: `python -m lalm.launch [torchrun options] scripts/train.py ...`.

It is torchrun (same options, same rendezvous; torch.distributed.run does the work) with two
additions that a scheduler's requeue logic needs and torchrun lacks:
- SIGUSR1 (SLURM's `--signal=USR1@T` warning) is forwarded to the workers. torchrun has no handler
  for it, so the signal would kill torchrun and leave the workers orphaned in their own sessions.
  The workers then save at the next step boundary and exit with EXIT_REQUEUE.
- The workers' exit code becomes the launcher's: torchrun exits 1 whatever its workers returned, so
  a batch script could not tell a preemption (75: requeue) from a crash. See lalm.training.exits.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

import psutil
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run


def _forward(signum: int, frame: FrameType | None) -> None:
    for child in psutil.Process().children(recursive=False):
        try:
            child.send_signal(signum)
        except psutil.NoSuchProcess:  # exited meanwhile
            continue


def exit_code(error: ChildFailedError) -> int:
    """The first failed worker's exit code (torchrun's root cause); 1 if it died by a signal."""
    _, failure = error.get_first_failure()
    return failure.exitcode if failure.exitcode > 0 else 1


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGUSR1, _forward)
    try:
        run(parse_args(argv))
    except ChildFailedError as error:
        print(error, file=sys.stderr)
        return exit_code(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
