"""CoVoST 2 (Facebook): speech translation from 21 languages into English and from English into 15,
over Common Voice 4 audio. Tasks: s2tt (the translation) and asr (the source sentence).

    python scripts/prepare_data.py recipe=covost2 source_dir=/data/covost2 \
        recipe.audio_dir=/data/cv-corpus-4-2019-12-10 output_dir=DIR 'recipe.languages=[en_zh-CN,zh-CN_en]'

source_dir holds the CoVoST 2 TSVs of each pair, in either form (the split files win where both are):

    <source_dir>/
    ├── covost_v2.<src>_<tgt>.train.tsv   as the official get_covost_splits.py writes them:
    ├── covost_v2.<src>_<tgt>.dev.tsv       columns path, sentence, translation, client_id
    ├── covost_v2.<src>_<tgt>.test.tsv
    └── covost_v2.<src>_<tgt>.tsv         as released in covost_v2.<src>_<tgt>.tsv.tar.gz: columns path,
                                            translation, split (train, train_covost, dev, test) and
                                            sentence if present, else taken from Common Voice's
                                            <src>/validated.tsv, as get_covost_splits.py does

audio_dir is the Common Voice release CoVoST 2 was built on (cv-corpus-4-2019-12-10/), holding
<src>/clips/<path>.mp3 for every source language read (and <src>/validated.tsv where needed above);
for one source language, audio_dir may also be that <src>/clips/ folder itself (its parent named
<src>, as in Common Voice).

Pairs are named as in the file names: en_de, en_zh-CN, zh-CN_en, sv-SE_en. `recipe.languages` picks
pairs ([] = every pair found); a name by base languages (en_zh) picks the one pair it matches.
Language tags: Common Voice's locales in BCP 47 form (zh-CN, sv-SE; commonvoice.locale_language).

Splits: the official ones; train = train + train_covost (the extra CoVoST training clips, as the
official script and Hugging Face's loader count them). Records: s2tt (id
`covost2-<clip>-<src>_<tgt>`, language src, target_language tgt, text the translation) and asr of
the source sentence (id `covost2-<clip>-asr`), once per clip and split however many pairs share the
clip (every en->X pair has the same English clips). Evaluation sets: the test split's s2tt records of
each pair, `eval/covost2_<src>_<tgt>_test.jsonl` with base languages (covost2_en_zh_test,
covost2_zh_en_test), the report's CoVoST 2 rows.

Bad inputs: no TSV for a requested pair, no audio_dir or no clips/ for a source language, or a TSV
without its columns raises CorpusLayoutError. A row whose mp3 is missing is skipped as
`missing_audio`, one with an empty translation or sentence as `empty_text`, a released-TSV row whose
clip is not in validated.tsv as `no_source_sentence`, a split value other than the four as
`unknown_split`. Counts in summary["skipped"].
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from data_recipes.commonvoice import clip_path, locale_language, read_tsv
from data_recipes.corpus import SPLITS, CorpusLayoutError, Record, require, write_corpus
from lalm.config.data import CorpusRecipeConfig
from lalm.data.languages import base_language

PREFIX = "covost_v2."
# The released TSV's split column -> lalm's split (get_covost_splits.py's get_v2_split).
RELEASED_SPLITS = {"train": "train", "train_covost": "train", "dev": "dev", "test": "test"}


def available_pairs(source: Path) -> list[str]:
    """Every <src>_<tgt> with a TSV in source: 'en_de', 'zh-CN_en', ..."""
    names = {p.name[len(PREFIX) :].split(".")[0] for p in source.glob(f"{PREFIX}*.tsv")}
    return sorted(name for name in names if "_" in name)


def resolve_pairs(requested: list[str], available: list[str], source: Path) -> list[str]:
    """The pairs to read: each requested one by its exact name or, if none has it, the single pair with
    the same base languages ('en_zh' -> 'en_zh-CN'); [] = every available pair."""
    if not requested:
        return available

    def bases(pair: str) -> tuple[str, ...]:
        return tuple(base_language(locale_language(part)) for part in pair.split("_"))

    chosen = []
    for pair in requested:
        matches = [pair] if pair in available else [p for p in available if bases(p) == bases(pair)]
        if len(matches) != 1:
            raise CorpusLayoutError(
                f"CoVoST 2 pair {pair!r}: expected {source}/{PREFIX}{pair}.{{train,dev,test}}.tsv or "
                f"{PREFIX}{pair}.tsv; pairs found: {available or 'none'}"
            )
        chosen.append(matches[0])
    return chosen


def released_rows(tsv: Path, validated: Path, skipped: Counter[str]) -> dict[str, list[dict[str, str]]]:
    """Split -> rows of a released covost_v2.<pair>.tsv, with the source sentence from Common Voice's
    validated.tsv when the TSV has none."""
    rows = read_tsv(tsv, ("path", "translation", "split"), "the released CoVoST 2 TSV", "\\")
    if rows and "sentence" not in rows[0]:
        sentences = {
            r["path"]: r["sentence"]
            for r in read_tsv(validated, ("path", "sentence"), "Common Voice's validated clips", "\\")
        }
        skipped["no_source_sentence"] += sum(1 for row in rows if row["path"] not in sentences)
        rows = [{**row, "sentence": sentences[row["path"]]} for row in rows if row["path"] in sentences]
    by_split: dict[str, list[dict[str, str]]] = {split: [] for split in SPLITS}
    for row in rows:
        split = RELEASED_SPLITS.get(row["split"])
        if split is None:
            skipped["unknown_split"] += 1
        else:
            by_split[split].append(row)
    return by_split


def pair_rows(
    source: Path, pair: str, cv_locale: Path, skipped: Counter[str]
) -> dict[str, list[dict[str, str]]]:
    """Split -> rows of one pair, from the split TSVs if there, else from the released TSV."""
    split_tsvs = {split: source / f"{PREFIX}{pair}.{split}.tsv" for split in SPLITS}
    if any(tsv.is_file() for tsv in split_tsvs.values()):
        columns = ("path", "sentence", "translation")
        return {
            split: read_tsv(tsv, columns, f"CoVoST 2's {split} split", "\\") if tsv.is_file() else []
            for split, tsv in split_tsvs.items()
        }
    return released_rows(source / f"{PREFIX}{pair}.tsv", cv_locale / "validated.tsv", skipped)


def clips_folder(audio_dir: str | None, locale: str) -> Path:
    """Where the source language's mp3s are: <audio_dir>/<locale>/clips, or audio_dir if it is a clips/."""
    if not audio_dir:
        raise CorpusLayoutError("covost2 needs recipe.audio_dir=<the Common Voice 4 release folder>")
    root = Path(audio_dir).resolve()
    if (root / locale / "clips").is_dir():
        return root / locale / "clips"
    if root.name == "clips" and root.parent.name == locale and root.is_dir():
        return root
    raise CorpusLayoutError(f"expected the Common Voice clips of {locale!r} at {root / locale / 'clips'}")


def pair_records(rows: list[dict[str, str]], pair: str, clips: Path, skipped: Counter[str]) -> list[Record]:
    """The s2tt and asr records of one pair's split (asr possibly repeated across pairs: see prepare)."""
    src, tgt = pair.split("_")
    language, target = locale_language(src), locale_language(tgt)
    records: list[Record] = []
    for row in rows:
        audio = clip_path(clips, row["path"] or "")
        sentence, translation = (" ".join((row[key] or "").split()) for key in ("sentence", "translation"))
        if not sentence or not translation:
            skipped["empty_text"] += 1
            continue
        if not audio.is_file():
            skipped["missing_audio"] += 1
            continue
        common = {"audio": str(audio), "language": language}
        records.append(
            {
                "id": f"covost2-{audio.stem}-{pair}",
                **common,
                "task": "s2tt",
                "target_language": target,
                "text": translation,
            }
        )
        records.append({"id": f"covost2-{audio.stem}-asr", **common, "task": "asr", "text": sentence})
    return records


def eval_set_name(pair: str) -> str:
    """'en_zh-CN' -> 'covost2_en_zh_test'."""
    src, tgt = (base_language(locale_language(part)) for part in pair.split("_"))
    return f"covost2_{src}_{tgt}_test"


def prepare(cfg: CorpusRecipeConfig, output_dir: Path) -> dict[str, Any]:
    """Read CoVoST 2 and its Common Voice audio and write lalm's manifests (see the module docstring)."""
    source = require(Path(cfg.source_dir).resolve(), "the folder of CoVoST 2 TSVs")
    pairs = resolve_pairs(cfg.languages, available_pairs(source), source)
    if not pairs:
        raise CorpusLayoutError(
            f"no {PREFIX}<src>_<tgt>[.<split>].tsv in {source} (extract covost_v2.<src>_<tgt>.tsv.tar.gz there)"
        )
    skipped: Counter[str] = Counter()
    pretrain: dict[str, dict[str, Record]] = {split: {} for split in SPLITS}
    eval_sets: dict[str, list[Record]] = {}
    for pair in pairs:
        clips = clips_folder(cfg.audio_dir, pair.split("_")[0])
        for split, rows in pair_rows(source, pair, clips.parent, skipped).items():
            records = pair_records(rows, pair, clips, skipped)
            pretrain[split].update((r["id"], r) for r in records)  # one asr record per clip and split
            if split == "test" and records:
                eval_sets[eval_set_name(pair)] = [r for r in records if r["task"] == "s2tt"]
    splits = {split: list(by_id.values()) for split, by_id in pretrain.items()}
    return write_corpus(
        cfg, output_dir, splits, eval_sets, skipped={k: n for k, n in sorted(skipped.items()) if n}
    )
