"""What every public-corpus recipe shares: durations, SFT conversations, capping, writing the outputs.

A recipe (data_recipes/<name>.py, `prepare(cfg, output_dir)`) reads its corpus in the official layout
from `cfg.source_dir` and hands `write_corpus` its pretraining records per split and its evaluation
sets; this module writes, under output_dir:

    pretrain/{train,dev,test}.jsonl   task records with natural-language prompts drawn at load time
                                      (lalm.data.prompts), audio as {"path", "duration"}
    sft/{train,dev,test}.jsonl        analysis-mode conversations for `cfg.sft_fraction` of them: the
                                      audio with a text instruction from the prompt library
    eval/<test set>.jsonl             the report's test sets, in pretrain form (scripts/evaluate.py
                                      scores them by task), or for chat benchmarks (`sft_eval_sets`)
                                      analysis-mode conversations (scored by exact match or a judge)
    summary.json                      counts per split, task and language; hours of audio

Audio stays where the corpus keeps it (absolute paths): nothing is copied or converted, since
soundfile decodes WAV, FLAC, OGG and MP3 alike, except audio shipped inside tarballs, which
`extract_archive` unpacks into output_dir (AISHELL-1, FLEURS). Durations are read once here (from each
file's header, in `cfg.num_workers` processes), so training never opens every file at start.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tarfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import IO, Any, NamedTuple, TypeVar

import soundfile as sf

from lalm.config.data import CorpusRecipeConfig
from lalm.data.dataset import instruction_of
from lalm.data.manifest import read_manifest_records, write_manifest

Record = dict[str, Any]
SPLITS = ("train", "dev", "test")
_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


class CorpusLayoutError(ValueError):
    """The source folder does not hold the corpus in the layout the recipe expects."""


def require(path: Path, what: str) -> Path:
    """`path` if it exists, else a CorpusLayoutError naming what was expected there."""
    if not path.exists():
        raise CorpusLayoutError(f"expected {what} at {path}; is source_dir the corpus's top folder?")
    return path


def read_table(
    path: Path,
    columns: Iterable[str],
    what: str,
    delimiter: str = ",",
    quoting: int = csv.QUOTE_MINIMAL,
    escapechar: str | None = None,
) -> list[dict[str, str]]:
    """The rows of a CSV/TSV file with a header line, as dicts; a CorpusLayoutError when the file is
    missing or its header lacks one of `columns`. UTF-8 (a BOM is dropped); a file that is not valid
    UTF-8 is read as Latin-1, as some corpus tables (older Clotho captions) are."""
    raw = require(path, what).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    reader = csv.DictReader(
        io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, escapechar=escapechar
    )
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise CorpusLayoutError(
            f"{path}: the header {reader.fieldnames} lacks the columns {missing} of {what}"
        )
    return list(reader)


def unit_hash(*parts: object) -> float:
    """A number in [0, 1) from SHA-256 of the parts: a deterministic draw, the same in every process."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def parallel_map(
    function: Callable[[_Item], _Result], items: Sequence[_Item], num_workers: int, chunksize: int = 1
) -> list[_Result]:
    """`function` over `items`, results in item order: in up to `num_workers` processes when there
    are several workers and several items, else in this process (no pool to start for one job).
    `function` must be picklable, i.e. defined at a module's top level."""
    workers = min(num_workers, len(items))
    if workers <= 1:
        return [function(item) for item in items]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(function, items, chunksize=chunksize))


class Extraction(NamedTuple):
    """One tarball to unpack; the arguments of `extract_archive`."""

    archive: Path
    destination: Path
    names: frozenset[str] | None = None
    done_marker: Path | None = None


def _write_member(source: IO[bytes], path: Path) -> None:
    """The member's bytes at `path`, through `<path>.part` and a rename: a killed run never leaves a
    truncated file that a rerun would take for a finished one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    with part.open("wb") as out:
        while chunk := source.read(1 << 20):
            out.write(chunk)
    os.replace(part, path)


def _files_to_write(
    tar: tarfile.TarFile, destination: Path, names: frozenset[str] | None
) -> Iterator[tuple[tarfile.TarInfo, Path]]:
    """The archive's regular files `extract_archive` writes, each with its path. names given: those
    whose file name is listed, flat under destination. names None: every member, once tarfile's
    "data" filter accepted it (FilterError on an absolute path, a ../ escape, a link out of
    destination, a device file); folders and links are made here by tarfile itself."""
    for member in tar:
        if names is not None:
            name = os.path.basename(member.name)
            if member.isfile() and name in names:
                yield member, destination / name
            continue
        member = tarfile.data_filter(member, str(destination))
        if member.isfile():
            yield member, destination / member.name
        else:
            tar.extract(member, destination, filter="data")


def extract_archive(
    archive: Path,
    destination: Path,
    names: frozenset[str] | None = None,
    done_marker: Path | None = None,
) -> int:
    """Unpack a tarball (any compression tarfile reads) into `destination`; the number of files written.

    names None: every member under its own relative path, checked by tarfile's "data" filter.
    names given: only the regular files whose file name is in `names`, written flat into destination
    by that name (no member can write anywhere else), e.g. FLEURS's clips that its TSV lists.
    Reruns are cheap and safe: a file already there with the member's size is kept, and each file is
    written under a temporary name first (`_write_member`). With `done_marker`, an archive whose
    marker exists is not even opened, and the marker is written once every member is out (AISHELL-1:
    one archive per speaker, each done or not as a whole)."""
    if done_marker is not None and done_marker.exists():
        return 0
    destination.mkdir(parents=True, exist_ok=True)
    written = 0
    with tarfile.open(archive, "r:*") as tar:
        for member, path in _files_to_write(tar, destination, names):
            if path.is_file() and path.stat().st_size == member.size:
                continue
            source = tar.extractfile(member)
            assert source is not None  # a regular file always has a payload
            _write_member(source, path)
            written += 1
    if done_marker is not None:
        done_marker.parent.mkdir(parents=True, exist_ok=True)
        done_marker.touch()
    return written


def _run_extraction(job: Extraction) -> int:
    return extract_archive(*job)


def extract_archives(jobs: Sequence[Extraction], num_workers: int) -> int:
    """`extract_archive` for every job, in up to `num_workers` processes; the files written in all."""
    return sum(parallel_map(_run_extraction, list(jobs), num_workers))


def _duration(path: str) -> float:
    return float(sf.info(path).duration)


def durations(paths: Iterable[str], num_workers: int) -> dict[str, float]:
    """Seconds of audio per file, from its header; unreadable files raise with their path. A pool
    pays only beyond a few dozen files."""
    unique = sorted(set(paths))
    seconds = parallel_map(_duration, unique, num_workers if len(unique) > 64 else 1, chunksize=64)
    return dict(zip(unique, seconds, strict=True))


def with_durations(records: list[Record], num_workers: int) -> list[Record]:
    """Records whose audio path gets {"path", "duration"} (a record already carrying a slice keeps it)."""
    paths = [r["audio"] for r in records if isinstance(r["audio"], str)]
    seconds = durations(paths, num_workers)
    return [
        {**r, "audio": {"path": r["audio"], "duration": round(seconds[r["audio"]], 3)}}
        if isinstance(r["audio"], str)
        else r
        for r in records
    ]


def cap(records: list[Record], limit: int, seed: int) -> list[Record]:
    """At most `limit` records (0 = all), the ones with the smallest hash of (seed, id), in input order."""
    if limit <= 0 or len(records) <= limit:
        return records
    keep = set(sorted(range(len(records)), key=lambda i: unit_hash(seed, records[i]["id"]))[:limit])
    return [r for i, r in enumerate(records) if i in keep]


def sft_conversation(record: Record, prompt_seed: int) -> Record:
    """An analysis-mode SFT example from a pretraining record: the audio and a text instruction about
    it, answered by the record's target. The instruction is the one pretraining would show: the
    record's own prompt, else one from the task's library (lalm.data.dataset.instruction_of)."""
    user = [
        {"type": "audio", "audio": record["audio"]},
        {"type": "text", "text": instruction_of(record, prompt_seed)},
    ]
    return {
        "id": f"{record['id']}-sft",
        "mode": "analysis",
        "task": record["task"],
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": record["text"]}],
    }


def _summary(records: list[Record]) -> dict[str, Any]:
    seconds = sum((r["audio"].get("duration") or 0.0) for r in records)
    return {
        "examples": len(records),
        "hours": round(seconds / 3600, 4),
        "tasks": dict(Counter(r["task"] for r in records)),
        "languages": dict(Counter(r.get("language") or "-" for r in records)),
    }


def write_corpus(
    cfg: CorpusRecipeConfig,
    output_dir: Path,
    pretrain: dict[str, list[Record]],
    eval_sets: dict[str, list[Record]] | None = None,
    sft_eval_sets: dict[str, list[Record]] | None = None,
    skipped: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Write the manifests described in the module docstring and return the summary.

    pretrain: split -> records (audio as a path string or an {"path", "duration"} slice); splits may be
    empty but not unknown. eval_sets: test set name -> records of the same form. sft_eval_sets: test set
    name -> records of the same form, each with its own `prompt` (the question), written as one-turn
    analysis conversations (`sft_conversation`: ids get "-sft"). skipped: reason -> count of source rows
    the recipe left out, reported in the summary. Each written manifest is read back through lalm's own
    validator, so a recipe cannot write a line training would refuse."""
    unknown = set(pretrain) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown splits {sorted(unknown)}; expected {SPLITS}")
    summary: dict[str, Any] = {"recipe": cfg.name, "source_dir": str(cfg.source_dir), "pretrain": {}}
    written: list[tuple[Path, str]] = []
    for split, records in pretrain.items():
        records = with_durations(cap(records, cfg.max_per_split, cfg.seed), cfg.num_workers)
        if not records:
            continue
        path = output_dir / "pretrain" / f"{split}.jsonl"
        write_manifest(path, records)
        written.append((path, "pretrain"))
        summary["pretrain"][split] = _summary(records)
        chosen = [r for r in records if unit_hash(cfg.seed, "sft", r["id"]) < cfg.sft_fraction]
        if chosen:
            sft_path = output_dir / "sft" / f"{split}.jsonl"
            write_manifest(sft_path, [sft_conversation(r, cfg.prompt_seed) for r in chosen])
            written.append((sft_path, "sft"))
            summary.setdefault("sft", {})[split] = len(chosen)
    eval_forms = [(name, r, "pretrain") for name, r in (eval_sets or {}).items()]
    eval_forms += [(name, r, "sft") for name, r in (sft_eval_sets or {}).items()]
    for name, records, stage in eval_forms:
        records = with_durations(cap(records, cfg.max_per_split, cfg.seed), cfg.num_workers)
        if not records:  # like an empty split: nothing to write (the recipe's skip counts say why)
            continue
        path = output_dir / "eval" / f"{name}.jsonl"
        lines = records if stage == "pretrain" else [sft_conversation(r, cfg.prompt_seed) for r in records]
        write_manifest(path, lines)
        written.append((path, stage))
        summary.setdefault("eval", {})[name] = _summary(records)
    if skipped is not None:
        summary["skipped"] = dict(skipped)
    for path, stage in written:
        read_manifest_records(path, stage, check_files=False)
    output_dir.mkdir(parents=True, exist_ok=True)  # a corpus whose every row was skipped still reports why
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary
