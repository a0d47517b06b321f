"""ESC-50 (Piczak, ACM MM 2015): environmental sound classification, task `sound`, 50 classes.

    python scripts/prepare_data.py recipe=esc50 source_dir=/data/ESC-50-master output_dir=DIR

source_dir is the corpus's GitHub repository as cloned or unzipped (karolpiczak/ESC-50, the archive's
top folder is ESC-50-master; its parent works too):

    /data/ESC-50-master/
    ├── meta/esc50.csv     header filename,fold,target,category,esc10,src_file,take; 2,000 rows
    └── audio/*.wav        2,000 clips of 5 s, 44.1 kHz mono, named {fold}-{src_file}-{take}-{target}.wav

Splits follow ESC-50's five predefined folds (clips cut from one Freesound recording share a fold, so
folds never split a source recording): folds 1-3 -> train (1,200 clips), fold 4 -> dev (400), fold 5
-> test (400). The Qwen2-Audio report does not evaluate on ESC-50, so no eval/ set is written:
pretrain/test.jsonl (fold 5) is the held-out set. For the usual 5-fold cross-validation numbers, run
the recipe on copies of meta/esc50.csv with the fold numbers rotated.

The answer is the class name with underscores as spaces ("chirping_birds" -> "chirping birds"),
prompts in English; evaluation maps a free-text answer onto the 50 names (lalm.eval.metrics).

Bad rows never stop the recipe; they are counted in summary["skipped"]:
    missing_audio    a row whose WAV is not in audio/
    unknown_label    a category that is not one of ESC-50's 50, or a target number that disagrees with it
    bad_fold         a fold that is not 1-5
A missing meta/esc50.csv or audio/ folder, or a CSV without the columns above, raises a
CorpusLayoutError. The ESC-10 subset (column esc10) is not singled out.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from data_recipes.corpus import CorpusLayoutError, Record, read_table, require, write_corpus
from lalm.config.data import CorpusRecipeConfig

# ESC-50's classes by their `target` number (the corpus README's table, five groups of ten: animals,
# natural soundscapes and water, human non-speech sounds, interior/domestic, exterior/urban).
CATEGORIES = (
    *("dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow"),
    *("rain", "sea_waves", "crackling_fire", "crickets", "chirping_birds", "water_drops", "wind"),
    *("pouring_water", "toilet_flush", "thunderstorm"),
    *("crying_baby", "sneezing", "clapping", "breathing", "coughing", "footsteps", "laughing"),
    *("brushing_teeth", "snoring", "drinking_sipping"),
    *("door_wood_knock", "mouse_click", "keyboard_typing", "door_wood_creaks", "can_opening"),
    *("washing_machine", "vacuum_cleaner", "clock_alarm", "clock_tick", "glass_breaking"),
    *("helicopter", "chainsaw", "siren", "car_horn", "engine", "train", "church_bells", "airplane"),
    *("fireworks", "hand_saw"),
)
FOLD_SPLITS = {"1": "train", "2": "train", "3": "train", "4": "dev", "5": "test"}
COLUMNS = ("filename", "fold", "target", "category")
SKIP_REASONS = ("missing_audio", "unknown_label", "bad_fold")
META = Path("meta") / "esc50.csv"


def corpus_root(source: Path) -> Path:
    """The folder holding meta/ and audio/: source_dir itself, or its ESC-50-master/ subfolder."""
    for root in (source, source / "ESC-50-master"):
        if (root / META).is_file():
            return root
    raise CorpusLayoutError(
        f"expected ESC-50's metadata at {source / META} (or {source / 'ESC-50-master' / META}); "
        "is source_dir the ESC-50-master folder?"
    )


def answer(category: str) -> str:
    """The label as the model says it: 'chirping_birds' -> 'chirping birds'."""
    return category.replace("_", " ")


def label_ok(row: dict[str, str]) -> bool:
    """The category is one of the 50 and its target number is the one ESC-50 gives it."""
    category, target = (row["category"] or "").strip(), (row["target"] or "").strip()
    return category in CATEGORIES and target == str(CATEGORIES.index(category))


def skip_reason(row: dict[str, str], audio: Path) -> str | None:
    """Why a row cannot be used (one of SKIP_REASONS), None when it can."""
    if (row["fold"] or "").strip() not in FOLD_SPLITS:
        return "bad_fold"
    if not label_ok(row):
        return "unknown_label"
    return None if audio.is_file() else "missing_audio"


def read_records(root: Path, skipped: Counter[str]) -> dict[str, list[Record]]:
    """Split -> one `sound` record per usable row, in CSV order."""
    rows = read_table(root / META, COLUMNS, "ESC-50's metadata")
    audio_dir = require(root / "audio", "ESC-50's audio folder")
    splits: dict[str, list[Record]] = {split: [] for split in ("train", "dev", "test")}
    for row in rows:
        audio = audio_dir / (row["filename"] or "").strip()
        reason = skip_reason(row, audio)
        if reason:
            skipped[reason] += 1
            continue
        split = FOLD_SPLITS[row["fold"].strip()]
        splits[split].append(
            {
                "id": audio.stem,
                "audio": str(audio),
                "task": "sound",
                "text": answer(row["category"].strip()),
                "prompt_language": "en",
            }
        )
    return splits


def prepare(cfg: CorpusRecipeConfig, output_dir: Path) -> dict[str, Any]:
    """Read ESC-50 from cfg.source_dir and write the manifests (module docstring); the summary."""
    skipped: Counter[str] = Counter(dict.fromkeys(SKIP_REASONS, 0))
    splits = read_records(corpus_root(Path(cfg.source_dir).resolve()), skipped)
    return write_corpus(cfg, output_dir, pretrain=splits, skipped=dict(skipped))
