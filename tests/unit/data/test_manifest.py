"""Tests for JSONL manifest reading: one clear error per bad line, normalised records, Dataset round trip."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest

from lalm.data.audio import write_audio
from lalm.data.manifest import load_manifest, read_manifest_records, write_manifest
from lalm.data.tasks import task_names
from lalm.errors import LalmInputError, ManifestError

SR = 16_000
_DROP = object()  # marks a field to leave out of a record


# ---------------------------------------------------------------- helpers


def _wav(path: Path, seconds: float = 0.1, tone: bool = False) -> Path:
    n = int(seconds * SR)
    wave = 0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / SR) if tone else np.zeros(n)
    write_audio(path, wave)
    return path


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _write_records(path: Path, records: list[object]) -> Path:
    return _write_lines(path, [json.dumps(record, ensure_ascii=False) for record in records])


def _pretrain(audio: object = "a.wav", **overrides: object) -> dict:
    record = {"id": "p1", "audio": audio, "task": "asr", "language": "en", "text": "hello world"}
    record.update(overrides)
    return {k: v for k, v in record.items() if v is not _DROP}


def _sft(messages: object = None, **overrides: object) -> dict:
    if messages is None:
        messages = [
            {"role": "user", "content": [{"type": "audio", "audio": "a.wav"}]},
            {"role": "assistant", "content": "An answer."},
        ]
    record = {"id": "s1", "mode": "chat", "messages": messages}
    record.update(overrides)
    return {k: v for k, v in record.items() if v is not _DROP}


def _dpo(prompt: object = None, **overrides: object) -> dict:
    if prompt is None:
        prompt = [{"role": "user", "content": [{"type": "audio", "audio": "a.wav"}]}]
    record = {"id": "d1", "mode": "analysis", "prompt": prompt, "chosen": "good", "rejected": "bad"}
    record.update(overrides)
    return {k: v for k, v in record.items() if v is not _DROP}


def _user(text: str) -> dict:
    return {"role": "user", "content": text}


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    _wav(tmp_path / "a.wav")
    return tmp_path


def _error_for(path: Path, stage: str) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        read_manifest_records(path, stage)
    err = info.value
    assert err.path == str(path)
    assert str(err).startswith(f"{path}:{err.line}: ")
    return err


def _bad_line_error(data_dir: Path, stage: str, good: dict, bad: object, line: int = 2) -> ManifestError:
    """Write `line - 1` good records, then `bad`, then one more good record; the bad line must be named."""
    records = [good] * (line - 1) + [bad, good]
    err = _error_for(_write_records(data_dir / "m.jsonl", records), stage)
    assert err.line == line
    assert f"m.jsonl:{line}:" in str(err)
    return err


# ---------------------------------------------------------------- errors: file and line


def test_malformed_json_line_names_file_and_line(data_dir: Path) -> None:
    good = json.dumps(_pretrain())
    path = _write_lines(data_dir / "m.jsonl", [good, good, '{"id": "p3", "audio": "a.wav",', good])
    err = _error_for(path, "pretrain")
    assert err.line == 3
    assert str(path) in str(err)
    assert ":3:" in str(err)
    assert "not valid JSON" in str(err)
    assert isinstance(err, LalmInputError) and isinstance(err, ValueError)


def test_every_bad_line_is_reported_in_one_error(data_dir: Path) -> None:
    good = json.dumps(_pretrain())
    bad_text = json.dumps(_pretrain(text=""))
    path = _write_lines(data_dir / "m.jsonl", [good, "not json", good, "[1, 2]", bad_text, good])
    with pytest.raises(ManifestError) as info:
        read_manifest_records(path, "pretrain")
    err = info.value
    assert err.line == 2 and err.bad_lines == 3
    assert [line for line, _ in err.lines] == [2, 4, 5]
    assert str(err).splitlines() == [
        f"{path}: 3 bad lines",
        f"  {path}:2: not valid JSON (Expecting value)",
        f"  {path}:4: a line must hold a JSON object, got list",
        f"  {path}:5: field 'text' must be a non-empty str, got ''",
    ]


def test_long_listing_is_capped(data_dir: Path) -> None:
    good = json.dumps(_pretrain())
    path = _write_lines(data_dir / "m.jsonl", [good] + ["{oops"] * 25)
    with pytest.raises(ManifestError) as info:
        read_manifest_records(path, "pretrain")
    lines = str(info.value).splitlines()
    assert lines[0] == f"{path}: 25 bad lines"
    assert lines[1] == f"  {path}:2: not valid JSON (Expecting property name enclosed in double quotes)"
    assert lines[20] == f"  {path}:21: not valid JSON (Expecting property name enclosed in double quotes)"
    assert lines[21:] == ["  ... and 5 more bad lines"]
    assert info.value.bad_lines == 25 and len(info.value.lines) == ManifestError.MAX_LISTED


@pytest.mark.parametrize(
    ("records", "stage", "expected"),
    [
        (
            [_sft(), _sft(mode="analysis")],
            "pretrain",
            "an sft manifest (has 'messages' and 'mode'); stage=pretrain needs task/audio/text records",
        ),
        (
            [_pretrain(), _pretrain(task="lid")],
            "sft",
            "a pretrain manifest (has 'task', 'audio' and 'text'); stage=sft needs mode/messages records",
        ),
        (
            [_sft()],
            "dpo",
            "an sft manifest (has 'messages' and 'mode'); stage=dpo needs prompt/chosen/rejected records",
        ),
        (
            [_dpo(), _dpo()],
            "sft",
            "a dpo manifest (has 'prompt', 'chosen' and 'rejected'); stage=sft needs mode/messages records",
        ),
    ],
    ids=["sft-as-pretrain", "pretrain-as-sft", "sft-as-dpo", "dpo-as-sft"],
)
def test_manifest_of_another_stage_is_named(data_dir: Path, records: list, stage: str, expected: str) -> None:
    path = _write_records(data_dir / "m.jsonl", records)
    err = _error_for(path, stage)
    assert str(err) == f"{path}:1: this looks like {expected}"


def test_one_stray_line_of_another_stage_is_listed_as_a_bad_line(data_dir: Path) -> None:
    path = _write_records(data_dir / "m.jsonl", [_pretrain(), _sft()])
    err = _error_for(path, "pretrain")
    assert err.line == 2 and "missing field 'task'" in str(err) and "looks like" not in str(err)


def test_json_list_line_is_rejected(data_dir: Path) -> None:
    good = json.dumps(_pretrain())
    path = _write_lines(data_dir / "m.jsonl", [good, json.dumps([_pretrain()])])
    err = _error_for(path, "pretrain")
    assert err.line == 2
    assert "must hold a JSON object, got list" in str(err)


@pytest.mark.parametrize(
    ("stage", "good", "field"),
    [
        ("pretrain", _pretrain(), "text"),
        ("pretrain", _pretrain(), "audio"),
        ("pretrain", _pretrain(), "id"),
        ("sft", _sft(), "messages"),
        ("sft", _sft(), "mode"),
        ("dpo", _dpo(), "chosen"),
        ("dpo", _dpo(), "rejected"),
        ("dpo", _dpo(), "prompt"),
    ],
)
def test_missing_required_field(data_dir: Path, stage: str, good: dict, field: str) -> None:
    bad = {k: v for k, v in good.items() if k != field}
    err = _bad_line_error(data_dir, stage, good, bad)
    assert field in str(err)


def test_missing_text_message(data_dir: Path) -> None:
    err = _bad_line_error(data_dir, "pretrain", _pretrain(), _pretrain(text=_DROP))
    assert str(err).endswith("missing field 'text'")


def test_blank_text_is_rejected(data_dir: Path) -> None:
    err = _bad_line_error(data_dir, "pretrain", _pretrain(), _pretrain(text="   "))
    assert "field 'text' must be a non-empty str" in str(err)


def test_unknown_task_names_task_and_known_tasks(data_dir: Path) -> None:
    err = _bad_line_error(data_dir, "pretrain", _pretrain(), _pretrain(task="karaoke"))
    message = str(err)
    assert "'karaoke'" in message
    for task in task_names():
        assert task in message


def test_s2tt_requires_target_language(data_dir: Path) -> None:
    good = _pretrain(task="s2tt", target_language="zh")
    err = _bad_line_error(data_dir, "pretrain", good, _pretrain(task="s2tt"))
    assert "target_language" in str(err)


def test_target_language_optional_for_other_tasks(data_dir: Path) -> None:
    path = _write_records(data_dir / "m.jsonl", [_pretrain(task="lid")])
    assert read_manifest_records(path, "pretrain")[0]["target_language"] is None


@pytest.mark.parametrize(
    ("field", "overrides", "says"),
    [
        ("language", {"language": "english"}, "unknown language 'english'"),
        ("language", {"language": "und"}, "unknown language 'und'"),  # undetermined says nothing
        ("language", {"language": _DROP}, "missing field 'language'"),  # asr needs a language
        ("target_language", {"task": "s2tt", "target_language": "klingon"}, "unknown language 'klingon'"),
    ],
)
def test_bad_language_code(data_dir: Path, field: str, overrides: dict, says: str) -> None:
    err = _bad_line_error(data_dir, "pretrain", _pretrain(), _pretrain(**overrides))
    assert f"field '{field}'" in str(err) and says in str(err)


def test_any_iso_639_language_is_accepted_in_standard_form(data_dir: Path) -> None:
    records = [
        _pretrain(language="cy"),
        _pretrain(task="s2tt", language="eng", target_language="ZH-cn"),
        _pretrain(language="ckb"),
    ]
    path = _write_records(data_dir / "m.jsonl", records)
    got = [(r["language"], r["target_language"]) for r in read_manifest_records(path, "pretrain")]
    assert got == [("cy", None), ("en", "zh-CN"), ("ckb", None)]


def test_task_without_prompts_needs_the_records_prompt(data_dir: Path) -> None:
    err = _bad_line_error(data_dir, "pretrain", _pretrain(), _pretrain(task="chat"))
    assert "must bring its own 'prompt'" in str(err)
    path = _write_records(data_dir / "m.jsonl", [_pretrain(task="chat", prompt="Say hi.")])
    assert read_manifest_records(path, "pretrain")[0]["prompt"] == "Say hi."


def test_bad_prompt_language(data_dir: Path) -> None:
    err = _bad_line_error(data_dir, "pretrain", _pretrain(), _pretrain(prompt_language="fr"))
    assert "prompt_language" in str(err) and "'fr'" in str(err)


def test_missing_audio_file_names_audio_path(data_dir: Path) -> None:
    err = _bad_line_error(data_dir, "pretrain", _pretrain(), _pretrain(audio="clips/missing.wav"))
    assert "audio file not found" in str(err)
    assert str(data_dir / "clips" / "missing.wav") in str(err)


def test_missing_audio_file_inside_sft_message(data_dir: Path) -> None:
    bad = _sft([{"role": "user", "content": [{"type": "audio", "audio": "gone.wav"}]}, _assistant("x")])
    err = _bad_line_error(data_dir, "sft", _sft(), bad)
    assert str(data_dir / "gone.wav") in str(err)


def test_check_files_false_skips_audio_existence(data_dir: Path) -> None:
    path = _write_records(data_dir / "m.jsonl", [_pretrain(audio="missing.wav")])
    records = read_manifest_records(path, "pretrain", check_files=False)
    assert records[0]["audio"]["path"] == str(data_dir / "missing.wav")


@pytest.mark.parametrize(
    "audio",
    [
        {"path": "a.wav", "offset": -1.0},
        {"path": "a.wav", "duration": 0},
        {"path": "a.wav", "start": 1.0},
        {"offset": 1.0},
        42,
    ],
)
def test_bad_audio_ref(data_dir: Path, audio: object) -> None:
    err = _bad_line_error(data_dir, "pretrain", _pretrain(), _pretrain(audio=audio))
    assert "audio" in str(err)


@pytest.mark.parametrize(
    ("messages", "turns"),
    [
        ([_user("q"), _user("q2"), _assistant("a")], "['user', 'user', 'assistant']"),
        ([_assistant("a"), _user("q")], "['assistant', 'user']"),
        ([_user("q"), _assistant("a"), _user("q2")], "['user', 'assistant', 'user']"),
        ([_user("q")], "['user']"),
    ],
    ids=["user-user", "starts-with-assistant", "ends-with-user", "user-only"],
)
def test_sft_turns_must_alternate_and_end_with_assistant(data_dir: Path, messages: list, turns: str) -> None:
    err = _bad_line_error(data_dir, "sft", _sft(), _sft(messages))
    assert f"turns must alternate user/assistant and end with assistant, got {turns}" in str(err)


def test_system_message_only_first(data_dir: Path) -> None:
    messages = [_user("q"), {"role": "system", "content": "s"}, _assistant("a")]
    err = _bad_line_error(data_dir, "sft", _sft(), _sft(messages))
    assert "message 1: a system message may only come first" in str(err)


def test_unknown_role(data_dir: Path) -> None:
    messages = [{"role": "tool", "content": "q"}, _assistant("a")]
    err = _bad_line_error(data_dir, "sft", _sft(), _sft(messages))
    assert "message 0: role must be one of" in str(err) and "'tool'" in str(err)


def test_audio_in_assistant_turn_is_rejected(data_dir: Path) -> None:
    assistant = {"role": "assistant", "content": [{"type": "audio", "audio": "a.wav"}]}
    err = _bad_line_error(data_dir, "sft", _sft(), _sft([_user("q"), assistant]))
    assert "audio is only allowed in user turns, found in a assistant turn" in str(err)


def test_unknown_sft_mode(data_dir: Path) -> None:
    err = _bad_line_error(data_dir, "sft", _sft(), _sft(mode="voice"))
    assert "mode must be one of ['chat', 'analysis'], got 'voice'" in str(err)


def test_dpo_chosen_equal_rejected(data_dir: Path) -> None:
    err = _bad_line_error(data_dir, "dpo", _dpo(), _dpo(chosen="same", rejected="same"))
    assert str(err).endswith("chosen and rejected are identical")


def test_dpo_prompt_must_end_with_user(data_dir: Path) -> None:
    err = _bad_line_error(data_dir, "dpo", _dpo(), _dpo([_user("q"), _assistant("a")]))
    assert "end with user" in str(err)


def test_empty_manifest_is_an_error(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "empty.jsonl", ["", "   ", "\t"])
    err = _error_for(path, "pretrain")
    assert err.line == 0
    assert "manifest holds no examples" in str(err)


def test_missing_manifest_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "train.jsonl"
    err = _error_for(path, "sft")
    assert "manifest file not found" in str(err)
    assert str(path) in str(err)


def test_unknown_stage_is_a_value_error(data_dir: Path) -> None:
    path = _write_records(data_dir / "m.jsonl", [_pretrain()])
    with pytest.raises(
        ValueError, match=r"unknown stage 'rlhf'; expected one of \['pretrain', 'sft', 'dpo'\]"
    ) as info:
        read_manifest_records(path, "rlhf")
    assert not isinstance(info.value, ManifestError)


# ---------------------------------------------------------------- normalised records


def test_relative_audio_resolves_against_manifest_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _wav(tmp_path / "corpus" / "clips" / "x.wav")
    path = _write_records(tmp_path / "corpus" / "m.jsonl", [_pretrain(audio="clips/x.wav")])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # must not resolve against the working directory
    record = read_manifest_records(path, "pretrain")[0]
    assert record["audio"]["path"] == str(tmp_path / "corpus" / "clips" / "x.wav")


def test_absolute_audio_path_is_kept(tmp_path: Path) -> None:
    clip = _wav(tmp_path / "clips" / "abs.wav")
    path = _write_records(tmp_path / "sub" / "m.jsonl", [_pretrain(audio=str(clip))])
    assert read_manifest_records(path, "pretrain")[0]["audio"]["path"] == str(clip)


def test_string_audio_ref_becomes_dict(data_dir: Path) -> None:
    path = _write_records(data_dir / "m.jsonl", [_pretrain(audio="a.wav")])
    audio = read_manifest_records(path, "pretrain")[0]["audio"]
    assert audio == {"path": str(data_dir / "a.wav"), "offset": 0.0, "duration": None}
    assert type(audio["offset"]) is float


def test_offset_and_duration_are_floats(data_dir: Path) -> None:
    path = _write_records(
        data_dir / "m.jsonl",
        [
            _pretrain(audio={"path": "a.wav", "offset": 1, "duration": 2}),
            _pretrain(audio={"path": "a.wav", "offset": 0.25, "duration": 0.5}),
            _pretrain(audio={"path": "a.wav", "offset": None, "duration": None}),
        ],
    )
    audios = [r["audio"] for r in read_manifest_records(path, "pretrain")]
    assert [(a["offset"], a["duration"]) for a in audios] == [(1.0, 2.0), (0.25, 0.5), (0.0, None)]
    assert type(audios[0]["offset"]) is float and type(audios[0]["duration"]) is float


def test_pretrain_record_is_normalised(data_dir: Path) -> None:
    raw = _pretrain(
        id=7, task="s2tt", language="fr", target_language="zh", text="bonjour", prompt="Translate."
    )
    raw["prompt_language"] = "en"
    path = _write_records(data_dir / "m.jsonl", [raw])
    assert read_manifest_records(path, "pretrain") == [
        {
            "id": "7",
            "audio": {"path": str(data_dir / "a.wav"), "offset": 0.0, "duration": None},
            "task": "s2tt",
            "language": "fr",
            "target_language": "zh",
            "text": "bonjour",
            "references": None,
            "prompt": "Translate.",
            "prompt_language": "en",
            "_source": f"{path}:1",
        }
    ]


def _caption(**overrides: object) -> dict:
    return _pretrain(task="caption", language=_DROP, text="a dog barks", prompt_language="en", **overrides)


def test_references_list_every_correct_answer_and_load_beside_records_without(data_dir: Path) -> None:
    captions = ["a dog barks", "a dog is barking loudly", "barking"]
    path = _write_records(
        data_dir / "m.jsonl", [_caption(id="c1", references=captions), _caption(id="c2"), _pretrain(id="a1")]
    )
    records = _assert_dataset_equals_records(path, "pretrain")
    assert [r["references"] for r in records] == [captions, None, None]


@pytest.mark.parametrize(
    ("references", "says"),
    [
        ("a dog barks", "must be a non-empty list of non-empty strings, got 'a dog barks'"),
        ([], "must be a non-empty list of non-empty strings, got []"),
        (["a dog barks", " "], "must be a non-empty list of non-empty strings"),
        (["a dog barks", 3], "must be a non-empty list of non-empty strings"),
        (["a cat meows", "a cow moos"], "must include the record's 'text' 'a dog barks'"),
    ],
)
def test_bad_references_are_named(data_dir: Path, references: object, says: str) -> None:
    err = _bad_line_error(data_dir, "pretrain", _caption(), _caption(references=references))
    assert "field 'references'" in str(err) and says in str(err)


def test_references_on_a_task_not_scored_by_bleu_are_refused(data_dir: Path) -> None:
    err = _bad_line_error(data_dir, "pretrain", _pretrain(), _pretrain(references=["hello world", "hello"]))
    assert "field 'references' is only scored for BLEU tasks; task 'asr' is scored by wer" in str(err)


def test_source_counts_blank_lines(data_dir: Path) -> None:
    lines = ["", json.dumps(_pretrain(id="a")), "   ", "", json.dumps(_pretrain(id="b")), "", ""]
    lines.append(json.dumps(_pretrain(id="c")))
    path = _write_lines(data_dir / "m.jsonl", lines)
    records = read_manifest_records(path, "pretrain")
    assert [(r["id"], r["_source"]) for r in records] == [
        ("a", f"{path}:2"),
        ("b", f"{path}:5"),
        ("c", f"{path}:8"),
    ]


def test_blank_lines_do_not_shift_error_line(data_dir: Path) -> None:
    path = _write_lines(data_dir / "m.jsonl", ["", json.dumps(_pretrain()), "", "{oops"])
    assert _error_for(path, "pretrain").line == 4


def test_write_manifest_round_trips(tmp_path: Path) -> None:
    records = [{"id": "1", "text": "日本語"}, {"id": "2", "text": "x"}]
    path = tmp_path / "out" / "m.jsonl"
    write_manifest(path, records)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines == ['{"id": "1", "text": "日本語"}', '{"id": "2", "text": "x"}']


# ---------------------------------------------------------------- load_manifest -> datasets.Dataset


def _assert_dataset_equals_records(path: Path, stage: str) -> list[dict]:
    records = read_manifest_records(path, stage)
    dataset = load_manifest(path, stage)
    assert isinstance(dataset, datasets.Dataset)
    assert len(dataset) == len(records)
    assert [dataset[i] for i in range(len(dataset))] == records
    return records


def test_load_manifest_pretrain(data_dir: Path) -> None:
    _wav(data_dir / "b.wav", seconds=0.2, tone=True)
    path = _write_records(
        data_dir / "m.jsonl",
        [
            _pretrain(id="p1"),
            _pretrain(id="p2", audio={"path": "b.wav", "offset": 0.05, "duration": 0.1}, task="lid"),
            _pretrain(id="p3", task="s2tt", language="zh", target_language="en", prompt="Translate it."),
            _pretrain(id="p4", task="sound", language=_DROP, text="a dog barks"),
        ],
    )
    records = _assert_dataset_equals_records(path, "pretrain")
    assert [r["language"] for r in records] == ["en", "en", "zh", None]
    assert records[1]["audio"] == {"path": str(data_dir / "b.wav"), "offset": 0.05, "duration": 0.1}


def test_load_manifest_sft_mixed_content(data_dir: Path) -> None:
    _wav(data_dir / "b.wav", tone=True)
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare these:"},
                {"type": "audio", "audio": "a.wav"},
                {"type": "audio", "audio": {"path": "b.wav", "offset": 0.01, "duration": 0.05}},
            ],
        },
        {"role": "assistant", "content": "The second one has a tone."},
        {"role": "user", "content": [{"type": "text", "text": "Sure?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Yes."}]},
    ]
    path = _write_records(
        data_dir / "m.jsonl", [_sft(messages, id=1, mode="analysis"), _sft(id="s2", mode="chat")]
    )
    records = _assert_dataset_equals_records(path, "sft")
    a_ref = {"path": str(data_dir / "a.wav"), "offset": 0.0, "duration": None}
    b_ref = {"path": str(data_dir / "b.wav"), "offset": 0.01, "duration": 0.05}
    assert records[0] == {
        "id": "1",
        "mode": "analysis",
        "task": None,
        "messages": [
            {
                "role": "system",
                "content": [{"type": "text", "text": "You are a helpful assistant.", "audio": None}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare these:", "audio": None},
                    {"type": "audio", "text": None, "audio": a_ref},
                    {"type": "audio", "text": None, "audio": b_ref},
                ],
            },
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "The second one has a tone.", "audio": None}],
            },
            {"role": "user", "content": [{"type": "text", "text": "Sure?", "audio": None}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Yes.", "audio": None}]},
        ],
        "_source": f"{path}:1",
    }
    assert records[1]["messages"][1]["content"] == [{"type": "text", "text": "An answer.", "audio": None}]


def test_load_manifest_dpo(data_dir: Path) -> None:
    prompt = [
        {"role": "user", "content": [{"type": "audio", "audio": "a.wav"}, {"type": "text", "text": "What?"}]},
        _assistant("Silence."),
        _user("Again?"),
    ]
    path = _write_records(
        data_dir / "m.jsonl",
        [_dpo(id="d1"), _dpo(prompt, id="d2", mode="rubbish", chosen="Still silence.", rejected="Music.")],
    )
    records = _assert_dataset_equals_records(path, "dpo")
    assert [r["mode"] for r in records] == ["analysis", None]
    assert records[1]["prompt"][2] == {
        "role": "user",
        "content": [{"type": "text", "text": "Again?", "audio": None}],
    }
    assert (records[1]["chosen"], records[1]["rejected"]) == ("Still silence.", "Music.")


def test_load_manifest_propagates_manifest_error(data_dir: Path) -> None:
    path = _write_lines(data_dir / "m.jsonl", [json.dumps(_dpo()), "{"])
    with pytest.raises(ManifestError) as info:
        load_manifest(path, "dpo")
    assert info.value.line == 2


# ---------------------------------------------------------------- known bugs (see report)


def test_non_numeric_offset_names_file_and_line(data_dir: Path) -> None:
    bad = _pretrain(audio={"path": "a.wav", "offset": "soon"})
    path = _write_records(data_dir / "m.jsonl", [_pretrain(), bad])
    with pytest.raises(ManifestError) as info:
        read_manifest_records(path, "pretrain")
    assert info.value.line == 2


def test_system_only_messages_names_file_and_line(data_dir: Path) -> None:
    bad = _sft([{"role": "system", "content": "s"}])
    path = _write_records(data_dir / "m.jsonl", [_sft(), bad])
    with pytest.raises(ManifestError) as info:
        read_manifest_records(path, "sft")
    assert info.value.line == 2


def test_invalid_utf8_names_file_and_line(data_dir: Path) -> None:
    path = data_dir / "m.jsonl"
    path.write_bytes(json.dumps(_pretrain()).encode() + b"\n\xff\xfe{}\n")
    with pytest.raises(ManifestError) as info:
        read_manifest_records(path, "pretrain")
    assert info.value.line == 2


def test_sft_and_dpo_records_may_name_their_task(data_dir: Path) -> None:
    path = _write_records(data_dir / "t.jsonl", [_sft(id="a", task="lid"), _sft(id="b")])
    assert [r["task"] for r in read_manifest_records(path, "sft")] == ["lid", None]
    bad = _write_records(data_dir / "u.jsonl", [_sft(id="a", task=5)])
    with pytest.raises(ManifestError, match=r"u.jsonl:1: field 'task' must be a non-empty string"):
        read_manifest_records(bad, "sft")
