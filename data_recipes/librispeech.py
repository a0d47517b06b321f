"""LibriSpeech (OpenSLR 12): English read audiobooks, for ASR.

    python scripts/prepare_data.py recipe=librispeech source_dir=/data/LibriSpeech output_dir=DIR

source_dir is the `LibriSpeech/` folder the OpenSLR tarballs (train-clean-100.tar.gz, dev-clean.tar.gz,
...) extract into; any subset may be missing, but at least one must be there:

    LibriSpeech/
    ├── SPEAKERS.TXT  CHAPTERS.TXT  BOOKS.TXT  README.TXT  LICENSE.TXT     (not read)
    ├── train-clean-100/  train-clean-360/  train-other-500/
    ├── dev-clean/  dev-other/
    └── test-clean/  test-other/
        └── <speaker>/<chapter>/                                            e.g. 1089/134686/
            ├── <speaker>-<chapter>.trans.txt   one line per utterance: "1089-134686-0000 HE HOPED ..."
            └── <speaker>-<chapter>-<utt>.flac  16 kHz mono FLAC

Splits are the official ones: train = every train-* subset present, dev = dev-clean + dev-other,
test = test-clean + test-other (no speaker is in two of them). Each subset of dev and test is also an
evaluation set, `eval/librispeech_{dev,test}_{clean,other}.jsonl`, the report's LibriSpeech rows.
Records: task asr, language en, id = the utterance id. The transcripts are upper case without
punctuation; they are lower-cased so that a model trained on several corpora does not learn to answer
English speech in capitals (the evaluation's Whisper normaliser ignores case, so scores are the same).

Bad inputs: a chapter folder without its .trans.txt raises CorpusLayoutError (a broken extraction);
a transcript line whose .flac is missing is skipped as `missing_audio`, a .flac with no transcript
line as `no_transcript`, a line with an id but no words as `empty_text`; counts in summary["skipped"].
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from data_recipes.corpus import CorpusLayoutError, Record, require, write_corpus
from lalm.config.data import CorpusRecipeConfig

TRAIN_SUBSETS = ("train-clean-100", "train-clean-360", "train-other-500")
HELDOUT_SUBSETS = {"dev": ("dev-clean", "dev-other"), "test": ("test-clean", "test-other")}


def eval_set_name(subset: str) -> str:
    """'test-clean' -> 'librispeech_test_clean'."""
    return "librispeech_" + subset.replace("-", "_")


def read_chapter(chapter: Path, skipped: Counter[str]) -> list[Record]:
    """ASR records of one <speaker>/<chapter>/ folder, in transcript order."""
    transcript = require(chapter / f"{chapter.parent.name}-{chapter.name}.trans.txt", "a transcript")
    listed: set[str] = set()
    records: list[Record] = []
    for line in transcript.read_text(encoding="utf-8").splitlines():
        utterance, _, words = line.strip().partition(" ")
        if not utterance:
            continue
        listed.add(utterance)
        audio = chapter / f"{utterance}.flac"
        if not words.strip():
            skipped["empty_text"] += 1
        elif not audio.is_file():
            skipped["missing_audio"] += 1
        else:
            text = " ".join(words.split()).lower()
            records.append(
                {"id": utterance, "audio": str(audio), "task": "asr", "language": "en", "text": text}
            )
    skipped["no_transcript"] += sum(1 for flac in chapter.glob("*.flac") if flac.stem not in listed)
    return records


def read_subset(subset_dir: Path, skipped: Counter[str]) -> list[Record]:
    """Every utterance of one subset folder (train-clean-100/, test-other/, ...), sorted by folder."""
    chapters = sorted(p for p in subset_dir.glob("*/*") if p.is_dir())
    return [record for chapter in chapters for record in read_chapter(chapter, skipped)]


def prepare(cfg: CorpusRecipeConfig, output_dir: Path) -> dict[str, Any]:
    """Read LibriSpeech from cfg.source_dir and write lalm's manifests (see the module docstring)."""
    root = require(Path(cfg.source_dir).resolve(), "the LibriSpeech folder")
    subsets = {"train": TRAIN_SUBSETS, **HELDOUT_SUBSETS}
    present = [name for names in subsets.values() for name in names if (root / name).is_dir()]
    if not present:
        every = ", ".join(name for names in subsets.values() for name in names)
        raise CorpusLayoutError(f"no LibriSpeech subset folder ({every}) in {root}")
    skipped: Counter[str] = Counter()
    read = {name: read_subset(root / name, skipped) for name in present}
    pretrain = {
        split: [r for name in names if name in read for r in read[name]] for split, names in subsets.items()
    }
    heldout = [name for names in HELDOUT_SUBSETS.values() for name in names if name in read]
    eval_sets = {eval_set_name(name): read[name] for name in heldout}
    return write_corpus(
        cfg, output_dir, pretrain, eval_sets, skipped={k: n for k, n in sorted(skipped.items()) if n}
    )
