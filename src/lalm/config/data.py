"""Typed configs of data recipes (`recipe=` group of scripts/prepare_data.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING


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


@dataclass
class CorpusRecipeConfig:
    """A public corpus read from a local folder in its official distribution layout (no downloads).

        python scripts/prepare_data.py recipe=librispeech source_dir=/data/LibriSpeech output_dir=DIR

    Every corpus recipe (data_recipes/<name>.py) shares these settings:
    languages: the languages or locales to read where a corpus holds many (Common Voice, FLEURS,
        CoVoST 2), as the corpus names them ([] = every one found);
    max_per_split: keep at most this many examples per split, drawn deterministically (0 = all);
    sft_fraction: the share of each split's examples also written as single-turn SFT analysis
        conversations (the same audio with a text instruction from the prompt library);
    prompt_seed: seeds the instructions written into SFT conversations;
    num_workers: processes that read audio headers and convert audio (durations go into manifests);
    audio_dir: where a corpus's audio ships separately from its text (CoVoST 2's TSVs over a Common
        Voice release; MELD's pre-extracted WAVs), else None.
    """

    name: str = MISSING
    source_dir: str = MISSING
    audio_dir: str | None = None
    languages: list[str] = field(default_factory=list)
    max_per_split: int = 0
    sft_fraction: float = 0.25
    prompt_seed: int = 0
    seed: int = 0
    num_workers: int = 2
