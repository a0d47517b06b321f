"""Typed configs of data recipes (`recipe=` group of scripts/prepare_data.py)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SyntheticRecipeConfig:
    """The self-made corpus: espeak-ng speech in 8 languages, sox sounds, speech over noise.

    size scales every count (1.0: ~4,300 clips, about a minute on 2 cores). Dev and test each take
    `heldout_fraction` of the sentence meanings, so no sentence (in any language) crosses splits.
    dpo_asr_languages: the languages whose utterances get transcript preference pairs ([] = all); a
    pair is only informative where the model can transcribe the language at all.
    """

    name: str = "synthetic"
    size: float = 1.0
    seed: int = 0
    num_workers: int = 2
    max_clip_seconds: float = 6.0
    english_fraction: float = 0.4
    heldout_fraction: float = 0.1
    dpo_asr_languages: list[str] = field(default_factory=list)
