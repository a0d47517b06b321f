"""Checks of `data.mixture` (lalm.data.mixture) before anything is built, and the two small helpers
every config check shares."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lalm.config.train import TrainConfig
from lalm.data.mixture import resolve_sources


def check(condition: bool, message: str, errors: list[str]) -> None:
    """Append `message` to `errors` unless `condition` holds."""
    if not condition:
        errors.append(message)


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def mixture_errors(cfg: TrainConfig) -> list[str]:
    """data.mixture: sources that exist, weights all given (> 0) or none, a temperature > 0."""
    mixture = cfg.data.mixture
    if mixture.sources is None:
        return []
    if not mixture.sources:
        return ["data.mixture.sources is empty: list the sources, or leave it null (one train manifest)"]
    errors: list[str] = []
    check(
        cfg.data.train_manifest is None,
        "data.train_manifest and data.mixture are both set: the mixture replaces the train manifest, "
        "set one of them",
        errors,
    )
    sources = resolve_sources(mixture, cfg.stage.name)
    weights = [source.weight for source in sources]
    for source in sources:
        if source.weight is not None and not (finite(source.weight) and source.weight > 0):
            errors.append(f"data.mixture source {source.name!r}: weight must be > 0, got {source.weight}")
        check(
            Path(source.path).is_file(),
            f"data.mixture source {source.name!r}: {source.path} does not exist (prepare the data, or "
            f"give a train manifest or a recipe output folder with {cfg.stage.name}/train.jsonl)",
            errors,
        )
    given = sum(weight is not None for weight in weights)
    check(
        given in (0, len(sources)),
        f"data.mixture: {given} of {len(sources)} sources have a weight: give every source one, or none "
        "(then shares follow size^(1/temperature))",
        errors,
    )
    check(
        finite(mixture.temperature) and mixture.temperature > 0,
        f"data.mixture.temperature must be > 0, got {mixture.temperature}",
        errors,
    )
    check(
        given == 0 or mixture.temperature == 1.0,
        f"data.mixture.temperature={mixture.temperature} only applies to sources without a weight: "
        "drop the weights or the temperature",
        errors,
    )
    names = [source.name for source in sources]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    check(not duplicates, f"data.mixture: sources named alike {duplicates}: give them distinct names", errors)
    # Any stage with a reference cache (dpo), by its setting rather than its name.
    check(
        getattr(cfg.stage, "cache_reference", "never") == "never",
        f"stage={cfg.stage.name} with data.mixture: the reference cache is keyed by one train manifest, "
        "set stage.cache_reference=never",
        errors,
    )
    return errors
