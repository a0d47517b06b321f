"""Common Voice (Mozilla): crowd-sourced read speech in 100+ languages, for ASR, language ID and gender.

    python scripts/prepare_data.py recipe=commonvoice source_dir=/data/cv-corpus-15.0-2023-09-08 \
        output_dir=DIR 'recipe.languages=[en,zh-CN,yue,fr]'

source_dir is one release's top folder, which every locale's tarball extracts into:

    cv-corpus-<version>-<date>/
    └── <locale>/                              en, zh-CN, zh-HK, yue, fr, sv-SE, ...
        ├── train.tsv  dev.tsv  test.tsv       the official splits (no speaker in two of them)
        ├── validated.tsv  other.tsv  invalidated.tsv  reported.tsv  clip_durations.tsv  ...  (not read)
        └── clips/common_voice_<locale>_<n>.mp3

The TSVs are tab-separated with a header line and no quoting. Recent releases have the columns
client_id, path, sentence_id, sentence, sentence_domain, up_votes, down_votes, age, gender, accents,
variant, locale, segment; older ones lack sentence_id, sentence_domain and variant and call accents
`accent`. Only `path`, `sentence` and, where present, `gender` are read, so every release works.
`recipe.languages` picks locales as Common Voice names them ([] = every <locale>/ holding a train.tsv).

Records per clip (ids `<clip>-asr`, `<clip>-lid`, `<clip>-gender`, clip = the mp3's name without
.mp3): asr of `sentence` (as written, spaces collapsed); lid, answered with the language's name in a
prompt language drawn per clip (en or zh, from unit_hash); and gender (prompt language en, answer
"male"/"female") where the speaker gave one: "male"/"female" up to release 16, "male_masculine"/
"female_feminine" since 17. Other answers and empty cells give no gender record (not a skip: the
clip's other records stay). Language tags: the locale in BCP 47 form (zh-CN, sv-SE, nan-TW), except
zh-HK, which holds Cantonese and becomes yue-HK. Durations are read from the mp3 headers.

Splits: the official train/dev/test; the test split's asr records are also the evaluation set
`eval/commonvoice_<locale>_test.jsonl` (the report scores Common Voice 15 en, zh-CN, yue and fr).

Bad inputs: a requested locale without its folder, TSVs or clips/, or a TSV without the path or
sentence column, raises CorpusLayoutError. A row whose mp3 is missing is skipped as `missing_audio`,
one with an empty sentence as `empty_text`. A locale whose name is no BCP 47 language tag (e.g. `tok`)
raises when requested by name; with languages=[] its rows are skipped as `unknown_language`.
Counts in summary["skipped"].
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any

from data_recipes.corpus import (
    SPLITS,
    CorpusLayoutError,
    Record,
    read_table,
    require,
    unit_hash,
    write_corpus,
)
from lalm.config.data import CorpusRecipeConfig
from lalm.data.languages import UnknownLanguageError, check_language, language_name

# Locales whose name says less than their content: Common Voice's zh-HK is spoken Cantonese.
LOCALE_LANGUAGE = {"zh-HK": "yue-HK"}
GENDERS = {"male": "male", "female": "female", "male_masculine": "male", "female_feminine": "female"}


def read_tsv(
    path: Path, columns: tuple[str, ...], what: str, escapechar: str | None = None
) -> list[dict[str, str]]:
    """The rows of a tab-separated file with a header line, read without quote handling: Common Voice
    and CoVoST keep quotes inside sentences as they are (CoVoST escapes with a backslash instead)."""
    return read_table(path, columns, what, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar=escapechar)


def locale_language(locale: str) -> str:
    """The language tag of a Common Voice locale: 'zh-CN' -> 'zh-CN', 'zh-HK' -> 'yue-HK', 'sv-SE'."""
    return check_language(LOCALE_LANGUAGE.get(locale, locale))


def clip_path(clips: Path, name: str) -> Path:
    """A TSV `path` cell as a file in clips/ (the first releases left out the .mp3 suffix)."""
    return clips / (name if name.endswith(".mp3") else f"{name}.mp3")


def clip_records(row: dict[str, str], audio: Path, language: str, seed: int) -> list[Record]:
    """The asr, lid and (where the speaker gave one) gender records of one clip."""
    clip = audio.stem
    common = {"audio": str(audio), "language": language}
    prompt_language = "zh" if unit_hash(seed, "lid", clip) < 0.5 else "en"
    records = [
        {"id": f"{clip}-asr", **common, "task": "asr", "text": " ".join(row["sentence"].split())},
        {
            "id": f"{clip}-lid",
            **common,
            "task": "lid",
            "text": language_name(language, prompt_language),
            "prompt_language": prompt_language,
        },
    ]
    gender = GENDERS.get((row.get("gender") or "").strip())
    if gender:
        records.append(
            {"id": f"{clip}-gender", **common, "task": "gender", "text": gender, "prompt_language": "en"}
        )
    return records


def read_split(folder: Path, split: str, language: str, seed: int, skipped: Counter[str]) -> list[Record]:
    """Every record of one locale's <split>.tsv, in file order."""
    clips = require(folder / "clips", "the clips/ folder")
    records: list[Record] = []
    for row in read_tsv(folder / f"{split}.tsv", ("path", "sentence"), f"Common Voice's {split} split"):
        audio = clip_path(clips, row["path"] or "")
        if not (row["sentence"] or "").strip():
            skipped["empty_text"] += 1
        elif not row["path"] or not audio.is_file():
            skipped["missing_audio"] += 1
        else:
            records.extend(clip_records(row, audio, language, seed))
    return records


def find_locales(root: Path, requested: list[str]) -> list[str]:
    """The locales to read: the requested ones (each must be there), else every folder with a train.tsv."""
    for locale in requested:
        require(root / locale / "train.tsv", f"Common Voice locale {locale!r} (its train.tsv)")
    return list(requested) or sorted(p.parent.name for p in root.glob("*/train.tsv"))


def prepare(cfg: CorpusRecipeConfig, output_dir: Path) -> dict[str, Any]:
    """Read Common Voice from cfg.source_dir and write lalm's manifests (see the module docstring)."""
    root = require(Path(cfg.source_dir).resolve(), "the Common Voice release folder")
    locales = find_locales(root, cfg.languages)
    if not locales:
        raise CorpusLayoutError(f"no <locale>/train.tsv in {root}; is it a cv-corpus-<version> folder?")
    skipped: Counter[str] = Counter()
    pretrain: dict[str, list[Record]] = {split: [] for split in SPLITS}
    eval_sets: dict[str, list[Record]] = {}
    for locale in locales:
        try:
            language = locale_language(locale)
        except UnknownLanguageError as err:
            if cfg.languages:
                raise ValueError(f"Common Voice locale {locale!r}: {err}") from None
            tsvs = [root / locale / f"{split}.tsv" for split in SPLITS]
            skipped["unknown_language"] += sum(
                len(read_tsv(tsv, (), "a split")) for tsv in tsvs if tsv.is_file()
            )
            continue
        for split in SPLITS:
            records = read_split(root / locale, split, language, cfg.seed, skipped)
            pretrain[split] += records
            if split == "test" and records:
                eval_sets[f"commonvoice_{locale}_test"] = [r for r in records if r["task"] == "asr"]
    return write_corpus(
        cfg, output_dir, pretrain, eval_sets, skipped={k: n for k, n in sorted(skipped.items()) if n}
    )
