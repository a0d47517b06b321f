"""Clotho v2.1 (Drossos et al., ICASSP 2020): audio captioning, task `caption`, answers in English.

    python scripts/prepare_data.py recipe=clotho source_dir=/data/clotho output_dir=DIR

source_dir is the folder holding the files of Clotho v2.1's Zenodo record (4783391), with the three
audio archives extracted in place (each `clotho_audio_<split>.7z` holds a folder named after its split):

    /data/clotho/
    ├── clotho_captions_development.csv   header file_name,caption_1,...,caption_5; one row per clip
    ├── clotho_captions_validation.csv
    ├── clotho_captions_evaluation.csv
    ├── development/<file_name>.wav       3,839 clips of 15-30 s, 44.1 kHz mono 16-bit WAV
    ├── validation/<file_name>.wav        1,045 clips
    └── evaluation/<file_name>.wav        1,045 clips

The clotho_metadata_*.csv files (keywords, Freesound links, licences) and the caption-less DCASE test
audio are not read. File names are Freesound titles (spaces, commas, brackets), kept as they are.

Splits are Clotho's own: development -> train, validation -> dev, evaluation -> test. Every clip has
five captions written independently by different annotators, each a correct target, so the pretrain
manifests hold one record per caption (ids `<file stem>-c1` .. `-c5`, the same audio): five times the
examples without inventing anything, as captioning systems trained on Clotho do.

eval/clotho_eval.jsonl is the evaluation split with one record per clip whose `references` are all
its non-empty captions in CSV order (caption_1 .. caption_5), `text` the first of them (caption_1
unless that cell is empty; id `<file stem>-c<its number>`). lalm scores captions with sacrebleu's
multi-reference corpus BLEU against every caption of a clip (lalm.eval.scoring; a clip with an empty
cell has four references, which is fine: each clip is scored against its own). That is the
reference set of the DCASE/COCO caption evaluation's BLEU-4, but tokenised by sacrebleu (13a, case
kept) rather than by the COCO tools' PTB tokenizer, and the CIDEr/SPIDEr of the DCASE and Qwen2-Audio
tables are not computed: compare lalm's numbers with each other, not with those.

Bad rows never stop the recipe; they are counted in summary["skipped"]:
    missing_audio    a row whose WAV is not in its split's folder (the clip and its five captions)
    empty_caption    an empty caption cell (that caption only)
Missing CSVs or audio folders, or a CSV without the columns above, raise a CorpusLayoutError.
Captions are read as UTF-8 (Latin-1 where a file is not valid UTF-8, as some older copies are).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from data_recipes.corpus import Record, read_table, require, write_corpus
from lalm.config.data import CorpusRecipeConfig

# lalm split -> Clotho split (the CSV suffix and the audio folder's name).
SPLIT_FOLDERS = {"train": "development", "dev": "validation", "test": "evaluation"}
CAPTION_COLUMNS = tuple(f"caption_{k}" for k in range(1, 6))
EVAL_SET = "clotho_eval"
SKIP_REASONS = ("missing_audio", "empty_caption")

Clip = tuple[Path, list[str]]  # (wav, its five captions, "" where a cell is empty)


def read_clips(source: Path, folder: str, skipped: Counter[str]) -> list[Clip]:
    """The clips of one Clotho split whose audio is present, with their five captions in CSV order."""
    rows = read_table(
        source / f"clotho_captions_{folder}.csv",
        ("file_name", *CAPTION_COLUMNS),
        f"Clotho's {folder} captions",
    )
    audio_dir = require(source / folder, f"Clotho's {folder} audio (clotho_audio_{folder}.7z extracted)")
    clips = []
    for row in rows:
        audio = audio_dir / row["file_name"]
        if not audio.is_file():
            skipped["missing_audio"] += 1
            continue
        clips.append((audio, [(row[c] or "").strip() for c in CAPTION_COLUMNS]))
    return clips


def caption_record(audio: Path, number: int, caption: str) -> Record:
    """One caption of a clip as a pretraining record (prompts and answer in English)."""
    return {
        "id": f"{audio.stem}-c{number}",
        "audio": str(audio),
        "task": "caption",
        "text": caption,
        "prompt_language": "en",
    }


def caption_records(clips: list[Clip], skipped: Counter[str]) -> list[Record]:
    """Every non-empty caption of every clip, clip by clip."""
    records = []
    for audio, captions in clips:
        for number, caption in enumerate(captions, start=1):
            if caption:
                records.append(caption_record(audio, number, caption))
            else:
                skipped["empty_caption"] += 1
    return records


def eval_records(clips: list[Clip]) -> list[Record]:
    """One record per clip: every non-empty caption as its `references`, the first of them (caption_1
    unless that cell is empty) as its text."""
    records = []
    for audio, captions in clips:
        number = next((k for k, caption in enumerate(captions, start=1) if caption), None)
        if number is not None:  # a clip with five empty cells was counted by caption_records
            record = caption_record(audio, number, captions[number - 1])
            records.append({**record, "references": [caption for caption in captions if caption]})
    return records


def prepare(cfg: CorpusRecipeConfig, output_dir: Path) -> dict[str, Any]:
    """Read Clotho v2.1 from cfg.source_dir and write the manifests (module docstring); the summary."""
    source = Path(cfg.source_dir).resolve()
    skipped: Counter[str] = Counter(dict.fromkeys(SKIP_REASONS, 0))
    clips = {split: read_clips(source, folder, skipped) for split, folder in SPLIT_FOLDERS.items()}
    pretrain = {split: caption_records(split_clips, skipped) for split, split_clips in clips.items()}
    return write_corpus(
        cfg,
        output_dir,
        pretrain=pretrain,
        eval_sets={EVAL_SET: eval_records(clips["test"])},
        skipped=dict(skipped),
    )
