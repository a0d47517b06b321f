"""AIR-Bench (Yang et al., ACL 2024): its Chat and Foundation benchmarks as evaluation manifests.

    python scripts/prepare_data.py recipe=airbench source_dir=/data/AIR-Bench-Dataset output_dir=DIR

source_dir is a copy of the Hugging Face dataset repository qyang1021/AIR-Bench-Dataset (as
`huggingface-cli download --repo-type dataset` or `git clone` leaves it). Each track keeps a JSON list
of entries beside one audio folder per (task_name, dataset_name):

    /data/AIR-Bench-Dataset/
    ├── Chat/
    │   ├── Chat_meta.json          [{"path", "question", "answer_gt", "task_name", "dataset_name",
    │   │                             "uniq_id", "meta_info", ...}, ...]   ~2k open questions
    │   └── <task_name>_<dataset_name>/<path>   .wav or .mp3, e.g. speech_dialogue_QA_fisher/*.wav
    └── Foundation/
        ├── Foundation_meta.json    [{"path", "question", "choice_a", "choice_b", "choice_c"?,
        │                             "choice_d"?, "answer_gt", "task_name", "dataset_name",
        │                             "uniq_id"}, ...]   ~19k single-choice questions
        └── <task_name>_<dataset_name>/<path>   e.g. Sound_AQA_clothoaqa/*.wav

A track whose meta JSON is absent is not written (summary["eval"] names those written); with neither, a
CorpusLayoutError. The Chat tasks are speech_QA, speech_dialogue_QA, sound_QA, sound_generation_QA,
music_QA, music_generation_analysis_QA, speech_and_sound_QA and speech_and_music_QA; they are not
filtered, so a later release's tasks come through as well.

eval/airbench_chat.jsonl: one analysis-mode SFT conversation per entry (task "chat": the user turn is
the audio and the question, the assistant turn `answer_gt`; ids `airbench-chat-<uniq_id>-sft`).
scripts/evaluate.py's SFT path scores it by exact match and, given `judge.endpoint`, by an LLM judge,
which is what AIR-Bench's open answers need (the benchmark itself scores them with GPT-4).

eval/airbench_foundation_<task>.jsonl, one manifest per Foundation task (`foundation_set_name`:
the entry's task_name in lower case, e.g. airbench_foundation_speech_grounding,
airbench_foundation_speaker_emotion_recontion, AIR-Bench's own spelling; its datasets together, e.g.
IEMOCAP and MELD for emotion): one pretrain-form record per entry, task "choice" (lalm.data.task_library)
with the record's own prompt: AIR-Bench's instruction ("Choose the most suitable answer from options A,
B, C, and D ..."), the question and the lettered choices, as the official Inference_Foundation.py builds
it, except that an entry with two or three choices lists only those. The reference is the letter of
`answer_gt`, and exact match after normalisation scores it ("B." and "b" match "B"): stricter than the
official score_foundation.py, which reads a reply's first character (or its second-to-last, for "The
answer is B."), so "B. birds" counts there and not here. Ids `airbench-foundation-<uniq_id>`. Given
several of these manifests, evaluation reports `choice/exact_match` over all their questions and
`choice/<manifest>/exact_match` for each (lalm.eval.scoring): the 19 tasks of the paper's table (the
official script splits a task further by dataset).

Audio: the files stay where they are; an entry whose file is missing is counted, not written. The
Foundation's Audio_Grounding entries name .wav files that ship as .flac: when the named file is missing,
the .flac beside it is taken, as the official inference script does.

Bad entries never stop the recipe; they are counted in summary["skipped"] per track (chat/, foundation/):
    <track>/missing_audio      the named file (or its .flac) is not there
    <track>/incomplete_entry   a field above is missing or empty
    foundation/answer_not_a_choice   answer_gt is none of the choices (or fewer than two choices)
    <track>/duplicate_id       a uniq_id seen before in the track (the first entry is kept)
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from data_recipes.corpus import CorpusLayoutError, Record, write_corpus
from lalm.config.data import CorpusRecipeConfig

TRACKS = ("Chat", "Foundation")
ENTRY_FIELDS = ("path", "question", "answer_gt", "task_name", "dataset_name", "uniq_id")
LETTERS = "ABCD"
CHOICE_FIELDS = tuple(f"choice_{letter.lower()}" for letter in LETTERS)
SKIP_REASONS = {
    "Chat": ("missing_audio", "incomplete_entry", "duplicate_id"),
    "Foundation": ("missing_audio", "incomplete_entry", "answer_not_a_choice", "duplicate_id"),
}

Entry = dict[str, Any]


def read_meta(track_dir: Path) -> list[Entry]:
    """The entries of <track>/<track>_meta.json: a JSON list of objects."""
    path = track_dir / f"{track_dir.name}_meta.json"
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CorpusLayoutError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise CorpusLayoutError(f"{path}: expected a JSON list of objects, as AIR-Bench ships it")
    return entries


def text_field(entry: Entry, name: str) -> str:
    """A field as stripped text ('' when absent or null); uniq_id and choices may be numbers."""
    value = entry.get(name)
    return "" if value is None else str(value).strip()


def audio_file(track_dir: Path, entry: Entry) -> Path | None:
    """<track>/<task_name>_<dataset_name>/<path>, or the .flac of that name; None when neither exists."""
    named = track_dir / f"{entry['task_name']}_{entry['dataset_name']}" / str(entry["path"])
    for path in (named, named.with_suffix(".flac")):
        if path.is_file():
            return path
    return None


def choices_of(entry: Entry) -> list[str]:
    """The entry's choices in letter order, up to the first one it lacks (A and B at least)."""
    choices = []
    for name in CHOICE_FIELDS:
        choice = text_field(entry, name)
        if not choice:
            break
        choices.append(choice)
    return choices


def foundation_prompt(question: str, choices: list[str]) -> str:
    """AIR-Bench's single-choice instruction, the question and the lettered choices, one per line."""
    letters = LETTERS[: len(choices)]
    options = ", ".join(letters[:-1]) + f", and {letters[-1]}" if len(letters) > 2 else " and ".join(letters)
    instruction = (
        f"Choose the most suitable answer from options {options} to respond the question in next line, "
        f"you may only choose {' or '.join(letters)}."
    )
    lines = [f"{letter}. {choice}" for letter, choice in zip(letters, choices, strict=True)]
    return "\n".join([instruction, question, *lines])


def foundation_set_name(task_name: str) -> str:
    """The eval set of a Foundation task: 'Speech_Grounding' -> 'airbench_foundation_speech_grounding'
    (lower case, runs of other characters than letters and digits as one '_')."""
    slug = re.sub(r"[^a-z0-9]+", "_", task_name.lower()).strip("_")
    return f"airbench_foundation_{slug or 'unnamed'}"


def chat_record(entry: Entry, audio: Path) -> Record | str:
    """The record: the question as its own prompt, answer_gt as its text (never a skip reason)."""
    return {
        "id": f"airbench-chat-{text_field(entry, 'uniq_id')}",
        "audio": str(audio),
        "task": "chat",
        "prompt": text_field(entry, "question"),
        "text": text_field(entry, "answer_gt"),
    }


def foundation_record(entry: Entry, audio: Path) -> Record | str:
    """The record, or the skip reason when answer_gt is none of the choices."""
    choices, answer = choices_of(entry), text_field(entry, "answer_gt")
    if len(choices) < 2 or answer not in choices:
        return "answer_not_a_choice"
    return {
        "id": f"airbench-foundation-{text_field(entry, 'uniq_id')}",
        "audio": str(audio),
        "task": "choice",
        "prompt": foundation_prompt(text_field(entry, "question"), choices),
        "text": LETTERS[choices.index(answer)],
    }


BUILDERS = {"Chat": chat_record, "Foundation": foundation_record}


def track_records(track_dir: Path, skipped: Counter[str]) -> list[tuple[Entry, Record]]:
    """One record per usable entry of a track, with its entry, in meta order; the others counted by
    reason."""
    build, prefix = BUILDERS[track_dir.name], track_dir.name.lower()
    records: list[tuple[Entry, Record]] = []
    seen = set()
    for entry in read_meta(track_dir):
        if not all(text_field(entry, name) for name in ENTRY_FIELDS):
            result: Record | str = "incomplete_entry"
        elif text_field(entry, "uniq_id") in seen:
            result = "duplicate_id"
        else:
            audio = audio_file(track_dir, entry)
            result = "missing_audio" if audio is None else build(entry, audio)
        if isinstance(result, str):
            skipped[f"{prefix}/{result}"] += 1
            continue
        seen.add(text_field(entry, "uniq_id"))
        records.append((entry, result))
    return records


def foundation_sets(records: list[tuple[Entry, Record]]) -> dict[str, list[Record]]:
    """Foundation records by eval set (`foundation_set_name` of their task_name), sets sorted by name."""
    sets: dict[str, list[Record]] = {}
    for entry, record in records:
        sets.setdefault(foundation_set_name(text_field(entry, "task_name")), []).append(record)
    return dict(sorted(sets.items()))


def prepare(cfg: CorpusRecipeConfig, output_dir: Path) -> dict[str, Any]:
    """Read AIR-Bench from cfg.source_dir and write its eval manifests (module docstring); the summary."""
    source = Path(cfg.source_dir).resolve()
    present = [t for t in TRACKS if (source / t / f"{t}_meta.json").is_file()]
    if not present:
        raise CorpusLayoutError(
            f"expected AIR-Bench's {source / 'Chat' / 'Chat_meta.json'} or "
            f"{source / 'Foundation' / 'Foundation_meta.json'}; is source_dir the AIR-Bench-Dataset folder?"
        )
    skipped: Counter[str] = Counter(
        {f"{t.lower()}/{reason}": 0 for t in present for reason in SKIP_REASONS[t]}
    )
    records = {t: track_records(source / t, skipped) for t in present}
    chat = [record for _, record in records.get("Chat", [])]
    return write_corpus(
        cfg,
        output_dir,
        pretrain={},
        eval_sets=foundation_sets(records.get("Foundation", [])),
        sft_eval_sets={"airbench_chat": chat} if "Chat" in records else {},
        skipped=dict(skipped),
    )
