"""TrainState: everything besides DeepSpeed's own state that a resumed run needs.

One seam for every stage: `state_dict()` goes into the checkpoint's lalm_state.json and
`load_state_dict()` restores it; the trainer's loop changes it only through `advance()`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done (applied or skipped)
    units_seen: float = 0.0  # supervised tokens or pairs, over all ranks
    examples_seen: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # skipped examples by reason
    bad_ids: list[str] = field(default_factory=list)  # distinct training examples found bad
    skipped_steps: int = 0  # steps whose update was skipped as non-finite
    consecutive_skips: int = 0

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for item in fields(self):
            if item.name in state:
                setattr(self, item.name, state[item.name])

    def advance(self, totals: dict[str, float], applied: bool) -> None:
        """One optimizer step done; `totals` are its sums over ranks (units, examples, dropped/<reason>)."""
        self.step += 1
        self.units_seen += totals["units"]
        self.examples_seen += int(totals["examples"])
        for key, count in totals.items():
            if key.startswith("dropped/") and count:
                reason = key.split("/", 1)[1]
                self.dropped[reason] = self.dropped.get(reason, 0) + int(count)
        self.skipped_steps += 0 if applied else 1
        self.consecutive_skips = 0 if applied else self.consecutive_skips + 1

    def add_bad(self, ids: list[str]) -> None:
        known = set(self.bad_ids)
        self.bad_ids.extend(i for i in dict.fromkeys(ids) if i not in known)
