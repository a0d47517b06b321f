"""JSONL manifests: one example per line, validated line by line, then held in a `datasets.Dataset`.

Schemas (see README "Data formats"). An audio reference is either a path string or
{"path": str, "offset": seconds, "duration": seconds}; relative paths are resolved against the
manifest's folder. Every record is normalised so that Arrow sees one schema per stage:
audio refs become {"path", "offset", "duration"} dicts, message contents become lists of items
{"type": "audio"|"text", "audio": ref|None, "text": str|None}, and `_source` keeps "file:line" for
error messages further down the pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets

from lalm.data.languages import UnknownLanguageError, check_language
from lalm.data.tasks import PROMPT_LANGUAGES, Task, UnknownTaskError, get_task
from lalm.errors import ManifestError
from lalm.stages.registry import get_stage, load, stage_names

SFT_MODES = ("chat", "analysis")
ROLES = ("system", "user", "assistant")

Record = dict[str, Any]


class InvalidRecord(Exception):
    """Raised inside a stage's record validator (lalm.stages.registry) with the reason; turned into a
    ManifestError carrying the file and line."""


def _require(record: Record, field: str, kind: type | tuple[type, ...]) -> Any:
    if field not in record:
        raise InvalidRecord(f"missing field '{field}'")
    value = record[field]
    if not isinstance(value, kind) or (isinstance(value, str) and not value.strip()):
        raise InvalidRecord(
            f"field '{field}' must be a non-empty {getattr(kind, '__name__', kind)}, got {value!r}"
        )
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _audio_ref(value: Any, base: Path, check_files: bool) -> dict[str, Any]:
    ref = {"path": value} if isinstance(value, str) else value
    if not isinstance(ref, dict) or not isinstance(ref.get("path"), str):
        raise InvalidRecord(f"audio must be a path or {{'path', 'offset', 'duration'}}, got {value!r}")
    unknown = set(ref) - {"path", "offset", "duration"}
    if unknown:
        raise InvalidRecord(f"unknown audio keys {sorted(unknown)}")
    path = Path(ref["path"])
    path = path if path.is_absolute() else base / path
    if check_files and not path.is_file():
        raise InvalidRecord(f"audio file not found: {path}")
    offset = 0.0 if ref.get("offset") is None else ref["offset"]
    duration = ref.get("duration")
    if (
        not _is_number(offset)
        or offset < 0
        or (duration is not None and (not _is_number(duration) or duration <= 0))
    ):
        raise InvalidRecord(f"audio offset must be a number >= 0 and duration a number > 0, got {ref!r}")
    return {
        "path": str(path),
        "offset": float(offset),
        "duration": None if duration is None else float(duration),
    }


def _language(record: Record, field: str, required: bool) -> str | None:
    """The record's language tag in standard form (any ISO 639 code, lalm.data.languages)."""
    value = record.get(field)
    if value is None:
        if required:
            raise InvalidRecord(f"missing field '{field}' (the task needs it)")
        return None
    try:
        return check_language(value)
    except UnknownLanguageError as err:
        raise InvalidRecord(f"field '{field}': {err}") from None


def _references(record: Record, task: Task, text: str) -> list[str] | None:
    """The record's optional `references`: every correct answer when there are several (Clotho's five
    captions), scored together by BLEU (lalm.eval.scoring). A non-empty list of non-empty strings that
    includes the record's `text` (the answer training teaches); only BLEU-scored tasks use it, so on
    another task it is refused rather than silently ignored."""
    value = record.get("references")
    if value is None:
        return None
    if task.metric != "bleu":
        raise InvalidRecord(
            f"field 'references' is only scored for BLEU tasks; task {task.name!r} is scored by {task.metric}"
        )
    if not isinstance(value, list) or not value or not all(isinstance(r, str) and r.strip() for r in value):
        raise InvalidRecord(
            f"field 'references' must be a non-empty list of non-empty strings, got {value!r}"
        )
    if text not in value:
        raise InvalidRecord(f"field 'references' must include the record's 'text' {text!r}, got {value!r}")
    return list(value)


def validate_pretrain(record: Record, base: Path, check_files: bool) -> Record:
    name = _require(record, "task", str)
    try:
        task = get_task(name)
    except UnknownTaskError as err:
        raise InvalidRecord(str(err)) from None
    target_language = _language(record, "target_language", required=task.needs_target_language)
    prompt = record.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise InvalidRecord(f"field 'prompt' must be a string, got {prompt!r}")
    if not prompt and not task.prompts:
        raise InvalidRecord(f"task {name!r} has no prompt library: the record must bring its own 'prompt'")
    prompt_language = record.get("prompt_language")
    if prompt_language is not None and prompt_language not in PROMPT_LANGUAGES:
        raise InvalidRecord(
            f"field 'prompt_language' must be one of {list(PROMPT_LANGUAGES)}, got {prompt_language!r}"
        )
    text = _require(record, "text", str)
    return {
        "id": str(_require(record, "id", (str, int))),
        "audio": _audio_ref(_require(record, "audio", (str, dict)), base, check_files),
        "task": name,
        "language": _language(record, "language", required=task.needs_language),
        "target_language": target_language,
        "text": text,
        "references": _references(record, task, text),
        "prompt": prompt,
        "prompt_language": prompt_language,
    }


def _content_items(message: Record, base: Path, check_files: bool) -> list[Record]:
    content = message.get("content")
    if isinstance(content, str) and content.strip():
        return [{"type": "text", "text": content, "audio": None}]
    if not isinstance(content, list) or not content:
        raise InvalidRecord(f"message content must be a non-empty string or list of items, got {content!r}")
    items = []
    for item in content:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text" and isinstance(item.get("text"), str) and item["text"]:
            items.append({"type": "text", "text": item["text"], "audio": None})
        elif kind == "audio" and "audio" in item:
            if message["role"] != "user":
                raise InvalidRecord(f"audio is only allowed in user turns, found in a {message['role']} turn")
            items.append(
                {"type": "audio", "text": None, "audio": _audio_ref(item["audio"], base, check_files)}
            )
        else:
            raise InvalidRecord(
                f"content item must be {{'type':'text','text':...}} or {{'type':'audio','audio':...}}, got {item!r}"
            )
    return items


def _messages(value: Any, base: Path, check_files: bool, ends_with: str, field: str) -> list[Record]:
    if not isinstance(value, list) or not value:
        raise InvalidRecord(f"field '{field}' must be a non-empty list of messages, got {value!r}")
    out = []
    for index, message in enumerate(value):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ROLES:
            raise InvalidRecord(f"message {index}: role must be one of {list(ROLES)}, got {role!r}")
        if role == "system" and index != 0:
            raise InvalidRecord(f"message {index}: a system message may only come first")
        out.append({"role": role, "content": _content_items(message, base, check_files)})
    turns = [m["role"] for m in out if m["role"] != "system"]
    expected = ["user", "assistant"] * len(turns)
    if not turns or turns != expected[: len(turns)] or turns[-1] != ends_with:
        raise InvalidRecord(f"turns must alternate user/assistant and end with {ends_with}, got {turns}")
    return out


def _optional_task(record: Record) -> str | None:
    """SFT and DPO records may name what they ask (any label, e.g. lid; for multi-turn SFT, the first
    turn's task). Evaluation reports DPO preference per task; SFT's is kept for inspection."""
    task = record.get("task")
    if task is not None and not (isinstance(task, str) and task):
        raise InvalidRecord(f"field 'task' must be a non-empty string when given, got {task!r}")
    return task


def validate_sft(record: Record, base: Path, check_files: bool) -> Record:
    mode = _require(record, "mode", str)
    if mode not in SFT_MODES:
        raise InvalidRecord(f"mode must be one of {list(SFT_MODES)}, got {mode!r}")
    return {
        "id": str(_require(record, "id", (str, int))),
        "mode": mode,
        "task": _optional_task(record),
        "messages": _messages(record.get("messages"), base, check_files, "assistant", "messages"),
    }


def validate_dpo(record: Record, base: Path, check_files: bool) -> Record:
    chosen, rejected = _require(record, "chosen", str), _require(record, "rejected", str)
    if chosen == rejected:
        raise InvalidRecord("chosen and rejected are identical")
    return {
        "id": str(_require(record, "id", (str, int))),
        "mode": record.get("mode") if record.get("mode") in SFT_MODES else None,
        "task": _optional_task(record),
        "prompt": _messages(record.get("prompt"), base, check_files, "user", "prompt"),
        "chosen": chosen,
        "rejected": rejected,
    }


def _record_shape(raw: Any) -> str | None:
    """The stage whose `record_keys` (lalm.stages.registry) a raw record has (None: no stage's, or
    more than one): a manifest given to the wrong stage is named as such, instead of reporting the
    same missing field on every line."""
    if not isinstance(raw, dict):
        return None
    matches = [name for name in stage_names() if all(key in raw for key in get_stage(name).record_keys)]
    return matches[0] if len(matches) == 1 else None


def _parse_line(raw_line: bytes) -> Record | None:
    """The JSON object on a line (None for a blank line); InvalidRecord if it is not UTF-8 JSON object."""
    try:
        line = raw_line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidRecord(f"not valid UTF-8 ({err.reason})") from None
    if not line.strip():
        return None
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as err:
        raise InvalidRecord(f"not valid JSON ({err.msg})") from None
    if not isinstance(raw, dict):
        raise InvalidRecord(f"a line must hold a JSON object, got {type(raw).__name__}")
    return raw


def _wrong_stage(path: Path, stage: str, first_line: int, shape: str) -> ManifestError:
    looks_like = get_stage(shape)
    keys = [f"'{key}'" for key in looks_like.record_keys]
    has = ", ".join(keys[:-1]) + f" and {keys[-1]}" if len(keys) > 1 else keys[0]
    message = (
        f"this looks like {looks_like.article} {shape} manifest (has {has}); "
        f"stage={stage} needs {get_stage(stage).records_are}"
    )
    return ManifestError(str(path), first_line, message)


def read_manifest_records(path: str | Path, stage: str, check_files: bool = True) -> list[Record]:
    """Parse and validate every line of a manifest. A bad line does not stop the scan: one
    ManifestError lists every bad line as file:line: message, or says that the file is another
    stage's manifest when no line fits this stage and every line fits that one."""
    if stage not in stage_names():
        raise ValueError(f"unknown stage {stage!r}; expected one of {list(stage_names())}")
    validate = load(get_stage(stage).validate_record)
    path = Path(path)
    if not path.is_file():
        raise ManifestError(str(path), 0, "manifest file not found")
    records: list[Record] = []
    bad: list[tuple[int, str]] = []  # the first ManifestError.MAX_LISTED bad lines
    bad_count = 0
    shapes: set[str | None] = set()  # what each bad line looks like
    with path.open("rb") as handle:
        for line_number, raw_line in enumerate(handle, start=1):
            raw = None
            try:
                raw = _parse_line(raw_line)
                if raw is None:
                    continue
                record = validate(raw, path.parent, check_files)
            except InvalidRecord as err:
                bad_count += 1
                if len(bad) < ManifestError.MAX_LISTED:
                    bad.append((line_number, str(err)))
                shapes.add(_record_shape(raw))
                continue
            record["_source"] = f"{path}:{line_number}"
            records.append(record)
    if bad:
        other = next(iter(shapes)) if len(shapes) == 1 else None
        if not records and other is not None and other != stage:
            raise _wrong_stage(path, stage, bad[0][0], other)
        raise ManifestError.of_lines(str(path), bad, bad_count)
    if not records:
        raise ManifestError(str(path), 0, "manifest holds no examples")
    return records


def load_manifest(path: str | Path, stage: str, check_files: bool = True) -> datasets.Dataset:
    """Validated manifest as a `datasets.Dataset` (Arrow-backed, memory-mapped, seekable by index)."""
    return datasets.Dataset.from_list(read_manifest_records(path, stage, check_files))


def write_manifest(path: str | Path, records: list[Record]) -> None:
    """Write records as JSONL (UTF-8, one object a line, non-ASCII kept readable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
