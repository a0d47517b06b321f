"""AISHELL-1 (OpenSLR 33): Mandarin read speech, for ASR.

    python scripts/prepare_data.py recipe=aishell1 source_dir=/data/aishell output_dir=DIR

source_dir is the folder data_aishell.tgz was extracted in (the data_aishell/ folder itself works too):

    <source_dir>/
    ├── data_aishell/
    │   ├── transcript/aishell_transcript_v0.8.txt   "BAC009S0002W0122 而 对 楼市 成交 抑制 作用 ..."
    │   └── wav/
    │       ├── train/<speaker>/<utt>.wav              e.g. train/S0002/BAC009S0002W0122.wav, 16 kHz
    │       ├── dev/<speaker>/<utt>.wav
    │       └── test/<speaker>/<utt>.wav
    └── resource_aishell/                            (lexicon, speaker info: not read)

data_aishell.tgz ships wav/ as one archive per speaker (wav/S0002.tar.gz, ..., each holding
<split>/<speaker>/*.wav). Archives still there are extracted (data_recipes.corpus.extract_archive, in
`cfg.num_workers` processes) into `output_dir/audio/` (<split>/<speaker>/*.wav; the corpus folder is
left untouched, so it may be read-only), once: a marker per archive in `output_dir/audio/.extracted/`,
written when the whole archive is out, makes a rerun skip it. Already extracted speakers
(wav/<split>/<speaker>/) are read in place; both kinds may be mixed.

Splits are the official ones (speaker-disjoint); dev and test are also the evaluation sets
`eval/aishell1_dev.jsonl` and `eval/aishell1_test.jsonl`. Records: task asr, language zh, id = the
utterance id. The transcripts are segmented into words with spaces; the words are joined without
them, as Chinese is written and as CER (the report's metric for Chinese) counts characters, keeping one
space only between two Latin-script words.

Bad inputs: a missing transcript file or wav/ folder raises CorpusLayoutError; a wav with no
transcript line is skipped as `no_transcript` (the release has a few hundred), a transcript line whose
wav is in no split as `missing_audio`, a line with an id but no words as `empty_text`; counts in
summary["skipped"].
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from data_recipes.corpus import (
    SPLITS,
    CorpusLayoutError,
    Extraction,
    Record,
    extract_archives,
    require,
    write_corpus,
)
from lalm.config.data import CorpusRecipeConfig

TRANSCRIPT = Path("transcript") / "aishell_transcript_v0.8.txt"
_LATIN_END = re.compile(r"[A-Za-z0-9]$")
_LATIN_START = re.compile(r"^[A-Za-z0-9]")


def join_words(words: list[str]) -> str:
    """Chinese words joined as written: ["而", "对", "楼市"] -> "而对楼市"; ["用", "iPhone", "X"] ->
    "用iPhone X" (a space survives only between two Latin-script or digit words)."""
    text = ""
    for word in words:
        if text and _LATIN_END.search(text) and _LATIN_START.search(word):
            text += " "
        text += word
    return text


def read_transcripts(path: Path, skipped: Counter[str]) -> dict[str, str]:
    """Utterance id -> transcript with the word spaces removed."""
    transcripts: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        utterance, *words = line.split() or [""]
        if words:
            transcripts[utterance] = join_words(words)
        elif utterance:
            skipped["empty_text"] += 1
    return transcripts


def extract_speaker_archives(wav_dir: Path, destination: Path, num_workers: int) -> list[Path]:
    """Extract every wav/<speaker>.tar.gz whole into destination, each marked done in
    destination/.extracted/ (see the module docstring); the archives."""
    archives = sorted(wav_dir.glob("*.tar.gz"))
    jobs = [Extraction(a, destination, done_marker=destination / ".extracted" / a.name) for a in archives]
    extract_archives(jobs, num_workers)
    return archives


def find_wavs(roots: list[Path]) -> dict[str, dict[str, Path]]:
    """split -> utterance id -> wav, from <root>/<split>/<speaker>/<utt>.wav under every root."""
    return {
        split: {wav.stem: wav for root in roots for wav in sorted((root / split).glob("*/*.wav"))}
        for split in SPLITS
    }


def prepare(cfg: CorpusRecipeConfig, output_dir: Path) -> dict[str, Any]:
    """Read AISHELL-1 from cfg.source_dir and write lalm's manifests (see the module docstring)."""
    source = require(Path(cfg.source_dir).resolve(), "the folder holding data_aishell/")
    root = source / "data_aishell" if (source / "data_aishell").is_dir() else source
    skipped: Counter[str] = Counter()
    transcripts = read_transcripts(require(root / TRANSCRIPT, "the AISHELL-1 transcript"), skipped)
    wav_dir = require(root / "wav", "the AISHELL-1 wav/ folder")
    extracted = output_dir / "audio"
    archives = extract_speaker_archives(wav_dir, extracted, cfg.num_workers)
    wavs = find_wavs([wav_dir, extracted])
    if not archives and not any(wavs.values()):
        raise CorpusLayoutError(
            f"expected wav/{{train,dev,test}}/<speaker>/*.wav or wav/<speaker>.tar.gz under {wav_dir}"
        )
    pretrain: dict[str, list[Record]] = {}
    for split, by_id in wavs.items():
        skipped["no_transcript"] += sum(1 for utterance in by_id if utterance not in transcripts)
        pretrain[split] = [
            {"id": utt, "audio": str(wav), "task": "asr", "language": "zh", "text": transcripts[utt]}
            for utt, wav in by_id.items()
            if utt in transcripts
        ]
    found = {utterance for by_id in wavs.values() for utterance in by_id}
    skipped["missing_audio"] += sum(1 for utterance in transcripts if utterance not in found)
    eval_sets = {f"aishell1_{split}": pretrain[split] for split in ("dev", "test") if pretrain[split]}
    return write_corpus(
        cfg, output_dir, pretrain, eval_sets, skipped={k: n for k, n in sorted(skipped.items()) if n}
    )
