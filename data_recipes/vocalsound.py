"""VocalSound (Gong et al., ICASSP 2022): laughter, sighs, coughs, throat clearing, sneezes and sniffs
from 3,365 speakers, for vocal sound classification and speaker gender.

    python scripts/prepare_data.py recipe=vocalsound source_dir=/data/vocalsound_16k output_dir=DIR

source_dir is the folder the official release vs_release_16k.zip (or vs_release_44k.zip) unzips into:

    vocalsound_16k/
    ├── audio_16k/                         (audio_44k/ in the 44.1 kHz release; 16k is read if both)
    │   └── <speaker>_<take>_<label>.wav   f0003_0_cough.wav: speaker f0003 (f/m = female/male), first
    │                                      recording session, label cough; 21,024 files
    ├── meta/
    │   └── tr_meta.csv  val_meta.csv  te_meta.csv
    │                                      the official speaker split, one speaker per row: speaker id,
    │                                      gender, age, country, native language, health condition
    ├── datafiles/  class_labels_indices_vs.csv  readme.txt          (not read)

Splits are the official ones, by speaker: train = tr_meta's speakers, dev = val_meta's, test = te_meta's;
a file's speaker is the part of its name before the first '_'. Records per clip (id
`vocalsound-<file stem>-<task>`): `vocal_sound`, whose answer is the release's display name in lower
case (laughter, sigh, cough, throat clearing, sneeze, sniff; the file names write "throatclearing"),
and `gender` (male or female, from the speaker id's first letter, which the meta tables' gender column
repeats). Both answers are English words, so both records fix prompt_language "en". Evaluation set:
`eval/vocalsound_test.jsonl`, vocal sound classification on the test speakers (the report's row).

Bad inputs: a missing audio folder or meta table raises CorpusLayoutError, and so does a speaker listed in
two meta tables (the official split would be ambiguous). A first meta row that is not a speaker is
taken for a header; any later such row is skipped as `bad_meta_row`. A WAV whose name does not read
<speaker>_<take>_<label> is skipped as `bad_file_name`, one with another label as `unknown_label`, one
whose speaker is in no meta table as `unknown_speaker`; counts in summary["skipped"].
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path
from typing import Any

from data_recipes.corpus import CorpusLayoutError, Record, require, write_corpus
from lalm.config.data import CorpusRecipeConfig

META_TABLES = {"train": "tr_meta.csv", "dev": "val_meta.csv", "test": "te_meta.csv"}
# File-name label -> answer: class_labels_indices_vs.csv's display names, lower case.
LABELS = {
    "laughter": "laughter",
    "sigh": "sigh",
    "cough": "cough",
    "throatclearing": "throat clearing",
    "sneeze": "sneeze",
    "sniff": "sniff",
}
GENDERS = {"f": "female", "m": "male"}
SPEAKER = re.compile(r"^[fm]\d+$")


def read_speakers(meta_dir: Path, skipped: Counter[str]) -> dict[str, str]:
    """Speaker id -> split, from the three official meta tables."""
    split_of: dict[str, str] = {}
    for split, name in META_TABLES.items():
        path = require(meta_dir / name, f"the {split} speaker table")
        with path.open(encoding="utf-8-sig", newline="") as f:
            for line, row in enumerate(csv.reader(f)):
                speaker = row[0].strip() if row else ""
                if SPEAKER.match(speaker):
                    if split_of.setdefault(speaker, split) != split:
                        raise CorpusLayoutError(
                            f"speaker {speaker} is in both {split_of[speaker]} and {path}"
                        )
                elif line > 0 and any(cell.strip() for cell in row):  # line 0: a header
                    skipped["bad_meta_row"] += 1
    return split_of


def audio_folder(root: Path) -> Path:
    """audio_16k/, else the 44.1 kHz release's audio_44k/."""
    for name in ("audio_16k", "audio_44k"):
        if (root / name).is_dir():
            return root / name
    raise CorpusLayoutError(f"expected the VocalSound clips at {root / 'audio_16k'} (or audio_44k/)")


def clip_records(wav: Path) -> tuple[str, list[Record]] | str:
    """(speaker, the vocal_sound and gender records) of one clip, or why it is skipped."""
    parts = wav.stem.split("_")
    if len(parts) != 3 or not SPEAKER.match(parts[0]):
        return "bad_file_name"
    speaker, _, label = parts
    if label not in LABELS:
        return "unknown_label"
    clip, audio = f"vocalsound-{wav.stem}", str(wav)
    answers = {"vocal_sound": LABELS[label], "gender": GENDERS[speaker[0]]}
    return speaker, [
        {"id": f"{clip}-{task}", "audio": audio, "task": task, "text": text, "prompt_language": "en"}
        for task, text in answers.items()
    ]


def prepare(cfg: CorpusRecipeConfig, output_dir: Path) -> dict[str, Any]:
    """Read VocalSound from cfg.source_dir and write lalm's manifests (see the module docstring)."""
    root = require(Path(cfg.source_dir).expanduser().resolve(), "the VocalSound folder")
    skipped: Counter[str] = Counter()
    split_of = read_speakers(require(root / "meta", "the VocalSound meta/ folder"), skipped)
    pretrain: dict[str, list[Record]] = {split: [] for split in META_TABLES}
    for wav in sorted(audio_folder(root).glob("*.wav")):
        parsed = clip_records(wav)
        if isinstance(parsed, str):
            skipped[parsed] += 1
        elif parsed[0] not in split_of:
            skipped["unknown_speaker"] += 1
        else:
            pretrain[split_of[parsed[0]]].extend(parsed[1])
    eval_sets = {"vocalsound_test": [r for r in pretrain["test"] if r["task"] == "vocal_sound"]}
    eval_sets = {name: records for name, records in eval_sets.items() if records}
    return write_corpus(
        cfg, output_dir, pretrain, eval_sets, skipped={k: n for k, n in sorted(skipped.items()) if n}
    )
