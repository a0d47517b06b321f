"""FLEURS (Google, 102 languages of read FLoRes sentences): ASR and spoken language identification.

    python scripts/prepare_data.py recipe=fleurs source_dir=/data/fleurs output_dir=DIR \
        'recipe.languages=[en_us,cmn_hans_cn,yue_hant_hk]'

source_dir is a copy of the Hugging Face hub dataset repository `google/fleurs` (its git clone, or
`huggingface_hub.snapshot_download(repo_id="google/fleurs", repo_type="dataset")`); only data/ is read:

    fleurs/
    └── data/
        └── <locale>/                    en_us, cmn_hans_cn, yue_hant_hk, fr_fr, es_419, ... (one per language)
            ├── train.tsv  dev.tsv  test.tsv
            └── audio/
                ├── train.tar.gz  dev.tar.gz  test.tar.gz    as shipped: members <split>/<file name>.wav
                └── train/  dev/  test/                      or already extracted: <file name>.wav

Each TSV is tab-separated without a header and without quoting (transcripts contain quote marks),
seven columns: sentence id (the FLoRes sentence: several speakers read each, so it is not a clip id),
file name, raw transcription, normalised transcription, character tokens, number of samples (16 kHz),
speaker gender. Audio is 16 kHz mono WAV. Where audio/<split>/ exists it is used in place; otherwise
the WAVs the TSV names are extracted from audio/<split>.tar.gz into output_dir/audio/<locale>/<split>/
by file name (data_recipes.corpus.extract_archive, a tarball per process; re-running skips files
already extracted).

Languages. cfg.languages picks locales, by FLEURS's name (en_us) or by the tag it maps to (en); [] reads
every locale under data/. A locale maps to its ISO 639 language code, the part before the first '_'
(en_us -> en, fil_ph -> fil, es_419 -> es, yue_hant_hk -> yue), except that Mandarin, cmn_hans_cn, is
stored as `zh`: lalm scores zh by characters and the report names the set FLEURS zh. Region and script
are dropped because FLEURS has one locale per language, so the language alone names it.

Records, per clip (id `fleurs-<locale>-<file stem>`): `asr` with the raw transcription (cased and
punctuated, as a model should write; the evaluation normalises before scoring) and `lid` whose answer
is the language's name in the prompt language, English or Chinese, drawn per clip from `cfg.seed`.
Splits are FLEURS's own train/dev/test. Evaluation sets: `eval/fleurs_<language>_test.jsonl` (ASR on
each locale's test split, e.g. fleurs_zh_test, the report's FLEURS row) and `eval/fleurs_lid_test.jsonl`
(language ID over every chosen locale's test split).

Bad inputs: a missing data/ folder, locale, TSV or audio (neither folder nor tarball) raises
CorpusLayoutError; a TSV row without seven columns is skipped as `malformed_row`, a repeated file name
as `duplicate`, an empty transcription as `empty_text`, a row whose WAV is missing as `missing_audio`;
counts in summary["skipped"].
"""

from __future__ import annotations

import csv
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
    unit_hash,
    write_corpus,
)
from lalm.config.data import CorpusRecipeConfig
from lalm.data.languages import UnknownLanguageError, check_language, language_name

# FLEURS names Mandarin by its ISO 639-3 code; lalm (and the report) calls it zh.
LANGUAGE_OVERRIDES = {"cmn": "zh"}
TSV_COLUMNS = 7


def fleurs_language(locale: str) -> str:
    """The ISO 639 code of a FLEURS locale: 'en_us' -> 'en', 'cmn_hans_cn' -> 'zh', 'kea_cv' -> 'kea'."""
    code = locale.split("_")[0].lower()
    code = LANGUAGE_OVERRIDES.get(code, code)
    try:
        return check_language(code)
    except UnknownLanguageError as err:
        raise CorpusLayoutError(f"FLEURS locale folder {locale!r} names no ISO 639 language: {err}") from None


def chosen_locales(data_dir: Path, wanted: list[str]) -> list[str]:
    """The locale folders to read: all under data/, or those `wanted` names (locale or language code)."""
    found = sorted(p.name for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise CorpusLayoutError(f"no FLEURS locale folder (data/<locale>/) in {data_dir}")
    if not wanted:
        return found
    by_name = {name: [name] for name in found}
    for name in found:
        by_name.setdefault(fleurs_language(name), []).append(name)
    unknown = [w for w in wanted if w not in by_name]
    if unknown:
        raise CorpusLayoutError(f"recipe.languages {unknown} not found under {data_dir}; found: {found}")
    return sorted({name for w in wanted for name in by_name[w]})


def read_tsv(path: Path, skipped: Counter[str]) -> list[list[str]]:
    """The rows of a FLEURS TSV with seven columns and a new file name; the others counted in skipped."""
    rows, seen = [], set()
    with require(path, "a FLEURS transcript table").open(encoding="utf-8", newline="") as f:
        for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            if not any(cell.strip() for cell in row):
                continue  # a blank line
            if len(row) != TSV_COLUMNS:
                skipped["malformed_row"] += 1
            elif row[1] in seen:
                skipped["duplicate"] += 1
            else:
                seen.add(row[1])
                rows.append(row)
    return rows


def audio_folder(locale_dir: Path, split: str, output_dir: Path) -> tuple[Path, Path | None]:
    """Where a split's WAVs are: (folder, None) if extracted in the corpus, else (the folder under
    output_dir to extract into, the tarball)."""
    extracted = locale_dir / "audio" / split
    if extracted.is_dir():
        return extracted, None
    archive = locale_dir / "audio" / f"{split}.tar.gz"
    if not archive.is_file():
        raise CorpusLayoutError(f"expected FLEURS audio at {extracted}/ or {archive}; neither exists")
    return output_dir / "audio" / locale_dir.name / split, archive


def clip_records(locale: str, row: list[str], wav: Path, seed: int) -> list[Record]:
    """The asr and lid records of one clip."""
    language = fleurs_language(locale)
    clip = f"fleurs-{locale}-{Path(row[1]).stem}"
    prompt_language = "zh" if unit_hash(seed, "lid-prompt", clip) < 0.5 else "en"
    common = {"audio": str(wav), "language": language}
    return [
        {"id": f"{clip}-asr", **common, "task": "asr", "text": " ".join(row[2].split())},
        {
            "id": f"{clip}-lid",
            **common,
            "task": "lid",
            "text": language_name(language, prompt_language),
            "prompt_language": prompt_language,
        },
    ]


def read_locale(
    data_dir: Path, locale: str, output_dir: Path, cfg: CorpusRecipeConfig, skipped: Counter[str]
) -> dict[str, list[Record]]:
    """Split -> records of one locale, extracting its tarballs first where needed."""
    locale_dir = data_dir / locale
    rows = {split: read_tsv(locale_dir / f"{split}.tsv", skipped) for split in SPLITS}
    folders = {split: audio_folder(locale_dir, split, output_dir) for split in SPLITS}
    jobs = [
        Extraction(archive, folder, names=frozenset(row[1] for row in rows[split]))
        for split, (folder, archive) in folders.items()
        if archive is not None
    ]
    extract_archives(jobs, cfg.num_workers)
    records: dict[str, list[Record]] = {split: [] for split in SPLITS}
    for split in SPLITS:
        for row in rows[split]:
            wav = folders[split][0] / row[1]
            if not row[2].strip():
                skipped["empty_text"] += 1
            elif not wav.is_file():
                skipped["missing_audio"] += 1
            else:
                records[split].extend(clip_records(locale, row, wav, cfg.seed))
    return records


def prepare(cfg: CorpusRecipeConfig, output_dir: Path) -> dict[str, Any]:
    """Read FLEURS from cfg.source_dir and write lalm's manifests (see the module docstring)."""
    data_dir = require(Path(cfg.source_dir).expanduser().resolve() / "data", "the FLEURS data/ folder")
    skipped: Counter[str] = Counter()
    pretrain: dict[str, list[Record]] = {split: [] for split in SPLITS}
    eval_sets: dict[str, list[Record]] = {}
    for locale in chosen_locales(data_dir, list(cfg.languages)):
        records = read_locale(data_dir, locale, output_dir, cfg, skipped)
        for split in SPLITS:
            pretrain[split].extend(records[split])
        name = f"fleurs_{fleurs_language(locale).replace('-', '_')}_test"
        eval_sets[name] = [r for r in records["test"] if r["task"] == "asr"]
    eval_sets["fleurs_lid_test"] = [r for r in pretrain["test"] if r["task"] == "lid"]
    eval_sets = {name: records for name, records in eval_sets.items() if records}
    return write_corpus(
        cfg, output_dir, pretrain, eval_sets, skipped={k: n for k, n in sorted(skipped.items()) if n}
    )
