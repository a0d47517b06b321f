"""MELD (Poria et al., ACL 2019): utterances from the TV series Friends with one of seven emotions, for
speech emotion recognition.

    python scripts/prepare_data.py recipe=meld source_dir=/data/MELD.Raw output_dir=DIR \
        [recipe.audio_dir=/data/meld_wav]

source_dir is the MELD.Raw/ folder of the official MELD.Raw.tar.gz (or the folder holding it), with the
split tarballs inside it extracted (`tar xzf train.tar.gz` etc.; either in place or into a folder named
after the split, as some copies have it):

    MELD.Raw/
    ├── train_sent_emo.csv  dev_sent_emo.csv  test_sent_emo.csv
    │       header: Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,
    │               StartTime,EndTime
    ├── train_splits/dia{Dialogue_ID}_utt{Utterance_ID}.mp4           (or train/train_splits/)
    ├── dev_splits_complete/dia{D}_utt{U}.mp4                         (or dev/dev_splits_complete/)
    └── output_repeated_splits_test/dia{D}_utt{U}.mp4                 (or test/output_repeated_splits_test/)

The clips are MP4 video, which soundfile cannot decode. Two ways to audio, tried in this order per clip:
  1. audio_dir=DIR of pre-extracted WAVs, one folder per split named like the clip folders or after the
     split: DIR/{train_splits,dev_splits_complete,output_repeated_splits_test}/dia{D}_utt{U}.wav or
     DIR/{train,dev,test}/dia{D}_utt{U}.wav (any sample rate; lalm resamples at load);
  2. with ffmpeg on PATH, the clip's audio is extracted to a 16 kHz mono WAV in
     output_dir/audio/<clip folder>/dia{D}_utt{U}.wav (`cfg.num_workers` at a time; re-running keeps the
     WAVs already there).
With neither audio_dir nor ffmpeg the recipe stops with a CorpusLayoutError saying so. The clip folders
are needed only for (2).

Records (id `meld-<split>-dia{D}_utt{U}`): task `emotion`, answer MELD's label word (neutral, joy,
sadness, anger, surprise, fear, disgust), prompt_language "en", language en. Splits are MELD's own;
the test split is also `eval/meld_test.jsonl`, the report's MELD row.

Bad inputs: a missing CSV (or a CSV without Emotion, Dialogue_ID, Utterance_ID), a missing clip folder
when there is no audio_dir, or an audio_dir with none of the split folders raise CorpusLayoutError. A row
whose ids are not integers is skipped as `malformed_row`, another emotion as `unknown_label`, a clip
with only its MP4 while ffmpeg is missing as `mp4_without_ffmpeg`, one with neither WAV nor MP4 as
`missing_audio` (MELD's train CSV lists dia125_utt3, which the release lacks), one whose MP4 ffmpeg
cannot read as `ffmpeg_failed`; counts in summary["skipped"].
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from data_recipes.corpus import SPLITS, CorpusLayoutError, Record, read_table, require, write_corpus
from lalm.config.data import CorpusRecipeConfig

CLIP_FOLDERS = {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}
EMOTIONS = ("neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust")
COLUMNS = ("Emotion", "Dialogue_ID", "Utterance_ID")


def meld_root(source_dir: str) -> Path:
    """MELD.Raw/ itself, or source_dir/MELD.Raw when given the folder above it."""
    root = require(Path(source_dir).expanduser().resolve(), "the MELD.Raw folder")
    return root / "MELD.Raw" if (root / "MELD.Raw").is_dir() else root


def first_dir(candidates: list[Path]) -> Path | None:
    return next((path for path in candidates if path.is_dir()), None)


def clip_folder(root: Path, split: str, required: bool) -> Path | None:
    """The split's MP4 folder, in place or under a folder named after the split; None if absent and
    not `required`."""
    name = CLIP_FOLDERS[split]
    found = first_dir([root / name, root / split / name])
    if found is None and required:
        raise CorpusLayoutError(
            f"expected MELD's {split} clips at {root / name} (or {root / split / name}); extract "
            f"{root / f'{split}.tar.gz'} there, or pass recipe.audio_dir with pre-extracted WAVs"
        )
    return found


def wav_folders(audio_dir: str | None) -> dict[str, Path | None]:
    """Split -> its folder of pre-extracted WAVs (None: no audio_dir, or no folder for that split)."""
    if audio_dir is None:
        return dict.fromkeys(SPLITS)
    base = require(Path(audio_dir).expanduser().resolve(), "MELD's pre-extracted WAVs (audio_dir)")
    folders = {split: first_dir([base / CLIP_FOLDERS[split], base / split]) for split in SPLITS}
    if not any(folders.values()):
        every = [*CLIP_FOLDERS.values(), *SPLITS]
        raise CorpusLayoutError(f"audio_dir {base} has none of the split folders {every}")
    return folders


def extract_audio(mp4: Path, wav: Path) -> bool:
    """The MP4's audio as a 16 kHz mono 16-bit WAV (whose presence means complete); False if ffmpeg fails."""
    if wav.is_file():
        return True
    wav.parent.mkdir(parents=True, exist_ok=True)
    partial = wav.with_name(wav.name + ".part")
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(mp4), "-vn", "-ac", "1"]
    command += ["-ar", "16000", "-c:a", "pcm_s16le", "-f", "wav", str(partial)]
    if subprocess.run(command, capture_output=True).returncode != 0:
        partial.unlink(missing_ok=True)
        return False
    os.replace(partial, wav)
    return True


def read_split(
    root: Path, split: str, wavs: Path | None, clips: Path | None, output_dir: Path, skipped: Counter[str]
) -> tuple[list[Record], list[tuple[Path, Path]]]:
    """The split's records and the (MP4, WAV) pairs ffmpeg has to extract before they are usable."""
    records, jobs = [], []
    for row in read_table(root / f"{split}_sent_emo.csv", COLUMNS, f"MELD's {split} labels"):
        emotion = row["Emotion"].strip().lower()
        try:
            clip = f"dia{int(row['Dialogue_ID'])}_utt{int(row['Utterance_ID'])}"
        except ValueError:
            skipped["malformed_row"] += 1
            continue
        if emotion not in EMOTIONS:
            skipped["unknown_label"] += 1
            continue
        wav = wavs / f"{clip}.wav" if wavs is not None else None
        mp4 = clips / f"{clip}.mp4" if clips is not None else None
        if wav is None or not wav.is_file():
            if mp4 is None or not mp4.is_file():
                skipped["missing_audio"] += 1
                continue
            if shutil.which("ffmpeg") is None:
                skipped["mp4_without_ffmpeg"] += 1
                continue
            wav = output_dir / "audio" / CLIP_FOLDERS[split] / f"{clip}.wav"
            jobs.append((mp4, wav))
        record = {"id": f"meld-{split}-{clip}", "audio": str(wav), "task": "emotion", "text": emotion}
        records.append({**record, "language": "en", "prompt_language": "en"})
    return records, jobs


def prepare(cfg: CorpusRecipeConfig, output_dir: Path) -> dict[str, Any]:
    """Read MELD from cfg.source_dir (and cfg.audio_dir) and write lalm's manifests (module docstring)."""
    root = meld_root(cfg.source_dir)
    for split in SPLITS:
        require(root / f"{split}_sent_emo.csv", f"MELD's {split} labels")
    wavs = wav_folders(cfg.audio_dir)
    clips = {split: clip_folder(root, split, required=cfg.audio_dir is None) for split in SPLITS}
    if cfg.audio_dir is None and shutil.which("ffmpeg") is None:
        raise CorpusLayoutError(
            "MELD ships its clips as MP4 video, which soundfile cannot decode: pass recipe.audio_dir=DIR "
            "with pre-extracted WAVs (DIR/<clip folder or split>/dia{D}_utt{U}.wav) or put ffmpeg on PATH"
        )
    skipped: Counter[str] = Counter()
    pretrain, jobs = {}, []
    for split in SPLITS:
        pretrain[split], split_jobs = read_split(root, split, wavs[split], clips[split], output_dir, skipped)
        jobs.extend(split_jobs)
    with ThreadPoolExecutor(max(1, cfg.num_workers)) as pool:  # ffmpeg runs outside the GIL
        done = dict(
            zip((wav for _, wav in jobs), pool.map(lambda job: extract_audio(*job), jobs), strict=True)
        )
    failed = {str(wav) for wav, ok in done.items() if not ok}
    skipped["ffmpeg_failed"] += len(failed)
    pretrain = {
        split: [r for r in records if r["audio"] not in failed] for split, records in pretrain.items()
    }
    eval_sets = {"meld_test": pretrain["test"]} if pretrain["test"] else {}
    return write_corpus(
        cfg, output_dir, pretrain, eval_sets, skipped={k: n for k, n in sorted(skipped.items()) if n}
    )
