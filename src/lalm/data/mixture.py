"""data.mixture: several train manifests in one dataset, drawn by source weight.

The sources' records are concatenated into one ManifestDataset (each keeps its `_source`
"file:line"), source s holding indices [offsets[s], offsets[s] + sizes[s]). The stream
(`Mixture.stream`) is a `MixtureStream(cycle=True)` over (source x stage group) groups: a position
draws a source by its share, then within the source the stage's own weighting applies (pretraining
task weights, the SFT chat share: an example keeps the relative chance the stage gives it over the
whole dataset, among the examples of its source), and every such group is read in shuffled passes.

Shares: the weights given, normalised; without weights, size^(1/T) normalised, as multilingual
corpora are mixed (T = 1: proportional to size; larger T flattens towards uniform).

This module imports no torch at load: lalm.config.validation uses `resolve_sources` before anything
heavy is loaded.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Source:
    name: str
    path: str  # the train manifest
    weight: float | None


def source_manifest(path: str, stage: str) -> str:
    """A source's train manifest: the path itself, or <folder>/<stage>/train.jsonl for a folder."""
    return str(Path(path) / stage / "train.jsonl") if Path(path).is_dir() else path


def default_name(path: str, stage: str) -> str:
    """<name>/<stage>/train.jsonl or a folder <name>/ -> name; any other file -> its stem."""
    given = Path(path)
    if given.is_dir():
        return given.resolve().name
    if given.parent.name == stage:
        return given.parent.parent.name or given.stem
    return given.stem


def resolve_sources(mixture: Any, stage: str) -> list[Source]:
    """A MixtureConfig's sources with their manifests and names resolved (nothing is read)."""
    return [
        Source(
            source.name or default_name(source.path, stage),
            source_manifest(source.path, stage),
            source.weight,
        )
        for source in mixture.sources
    ]


def source_shares(weights: Sequence[float | None], sizes: Sequence[int], temperature: float) -> list[float]:
    """Each source's share of the draws: its weight over the total when weights are given, else
    size^(1/temperature) over the total (validation guarantees all weights or none, all > 0)."""
    if all(w is not None for w in weights):
        raw = [float(w) for w in weights]  # type: ignore[arg-type]
    else:
        raw = [math.pow(size, 1.0 / temperature) for size in sizes]
    total = sum(raw)
    return [r / total for r in raw]


class CountingCollator:
    """A collator that also counts, per mixture source, the examples handed to it:
    batch["mix"] = {name: count} (dropped examples included; examples of no source, the dev set's,
    are not counted). The trainer logs the step's sums as `mix/<name>`."""

    def __init__(self, collator: Any, names: dict[str, str]) -> None:
        self.collator, self.names = collator, names  # manifest path (as in `_source`) -> source name

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(examples)
        counts = Counter(self.names.get(str(e.get("source", "")).rpartition(":")[0]) for e in examples)
        counts.pop(None, None)
        batch["mix"] = dict(counts)
        return batch


class Mixture:
    """The sources of a concatenated train dataset and how the stream draws from them."""

    def __init__(self, sources: Sequence[Source], sizes: Sequence[int], temperature: float) -> None:
        self.sources, self.sizes = list(sources), list(sizes)
        self.offsets = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        self.shares = source_shares([s.weight for s in self.sources], self.sizes, temperature)

    @property
    def names(self) -> list[str]:
        return [source.name for source in self.sources]

    def source_index(self, index: int) -> int:
        """The source that dataset index `index` belongs to."""
        for s in reversed(range(len(self.offsets))):
            if index >= self.offsets[s]:
                return s
        raise IndexError(index)

    def stream(self, stage_stream: Any, seed: int) -> Any:
        """The stage's stream over the whole dataset (an EpochStream: one group; a MixtureStream:
        its groups and weights) split by source and drawn by source share, cycled."""
        from lalm.data.sampling import MixtureStream

        if isinstance(stage_stream, MixtureStream):
            groups, weights = stage_stream.groups, stage_stream.weights
        else:
            groups, weights = [list(range(sum(self.sizes)))], [1.0]
        sub_groups: list[list[int]] = []
        sub_weights: list[float] = []
        for s, (start, size, share) in enumerate(zip(self.offsets, self.sizes, self.shares, strict=True)):
            parts = [[i for i in group if start <= i < start + size] for group in groups]
            # An example's weight within the stage's stream is its group's weight / the group's size.
            raw = [w / len(g) * len(p) for g, w, p in zip(groups, weights, parts, strict=True)]
            if sum(raw) <= 0:
                raise ValueError(
                    f"data.mixture source {self.names[s]!r}: the stage's weights leave none of it in"
                )
            sub_groups += [p for p, r in zip(parts, raw, strict=True) if r > 0]
            sub_weights += [share * r / sum(raw) for r in raw if r > 0]
        return MixtureStream(sub_groups, sub_weights, seed, cycle=True)

    def counting(self, collator: Any) -> CountingCollator:
        return CountingCollator(collator, {str(Path(s.path)): s.name for s in self.sources})

    def manifests(self) -> list[tuple[str, str, int]]:
        """(name, train manifest, examples) of every source, for the run's data fingerprint."""
        return [(s.name, s.path, size) for s, size in zip(self.sources, self.sizes, strict=True)]


def load_mixture(
    sources: Sequence[Source],
    stage: str,
    temperature: float,
    prompt_seed: int,
    duration_tolerance_s: float | None,
) -> tuple[Any, Mixture]:
    """The sources' manifests (each validated, a bad line or another stage's manifest refused as for
    one manifest) as one ManifestDataset, and the Mixture that draws from it."""
    import datasets

    from lalm.data.dataset import ManifestDataset
    from lalm.data.manifest import read_manifest_records

    records, sizes = [], []
    for source in sources:
        part = read_manifest_records(source.path, stage)
        records += part
        sizes.append(len(part))
    dataset = ManifestDataset(
        datasets.Dataset.from_list(records), stage, prompt_seed, duration_tolerance_s=duration_tolerance_s
    )
    return dataset, Mixture(sources, sizes, temperature)
