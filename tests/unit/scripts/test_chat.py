"""scripts/chat.py on the tiny model: one-shot voice chat and audio analysis give what the evaluation's
generation path gives for the same conversation; the interactive loop keeps the conversation (earlier
clips and answers are in the next prompt), /reset clears it, bad turns are reported and skipped."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from lalm.config.eval import GenerationConfig
from lalm.data.audio import AudioRef, load_audio
from lalm.eval.chat import Chat, ChatInputError, ChatSession, UserTurn, parse_line, user_message
from lalm.eval.generation import generate_predictions, load_for_generation
from tests.unit.scripts import run_script

NEW_TOKENS = 12
QUESTION = "What is said?"


def _env() -> dict[str, str]:
    return {
        "DS_ACCELERATOR": "cpu",
        "OMP_NUM_THREADS": "1",
        "PATH": os.environ["PATH"],
        "HOME": str(Path.home()),
    }


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    return load_for_generation(str(tiny_checkpoint))


@pytest.fixture(scope="module")
def question_wav(spoken) -> Path:
    return spoken("What is the capital of France?", "question")


def _user(wav: Path | None, text: str | None) -> dict:
    content = []
    if wav is not None:
        content.append({"type": "audio", "waveform": load_audio(AudioRef(str(wav)))})
    if text is not None:
        content.append({"type": "text", "text": text})
    return {"role": "user", "content": content}


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def _batch_answer(loaded, messages: list[dict]) -> str:
    """What evaluation and scripts/generate.py answer to this conversation (greedy)."""
    model, processor = loaded
    cfg = GenerationConfig(max_new_tokens=NEW_TOKENS)
    return generate_predictions(model, processor, [{"id": "x", "messages": messages}], 1, cfg).predictions[
        "x"
    ]


@pytest.mark.parametrize("mode", ["voice_chat", "analysis"])
def test_one_shot_prints_the_answer_generation_gives(tiny_checkpoint, question_wav, loaded, mode):
    text = ["text=" + QUESTION] if mode == "analysis" else []
    result = run_script(
        "chat.py",
        f"checkpoint={tiny_checkpoint}",
        f"audio=[{question_wav}]",
        *text,
        f"generation.max_new_tokens={NEW_TOKENS}",
        env=_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected = _batch_answer(loaded, [_user(question_wav, QUESTION if mode == "analysis" else None)])
    assert expected  # the random tiny model says something rather than stopping at once
    assert result.stdout.strip() == expected  # stdout holds the answer and nothing else
    assert result.stdout.endswith("\n") and result.stdout.count("\n") == expected.count("\n") + 1


def test_interactive_keeps_the_conversation_and_quits(tiny_checkpoint, question_wav, loaded, tmp_path):
    transcript = tmp_path / "chat.jsonl"
    lines = f"@{question_wav} {QUESTION}\nAnd in French?\n/quit\nnot read\n"
    result = run_script(
        "chat.py",
        f"checkpoint={tiny_checkpoint}",
        f"transcript={transcript}",
        f"generation.max_new_tokens={NEW_TOKENS}",
        env=_env(),
        stdin=lines,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("model> ") == 2 and "not read" not in result.stdout
    turns = [json.loads(line) for line in transcript.read_text().splitlines()]
    assert [t["turn"] for t in turns] == [1, 2]
    first, second = turns
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    assert second["messages"][0]["content"][0] == {"type": "audio", "audio": str(question_wav)}
    assert second["messages"][1]["content"][0]["text"] == first["answer"]
    # The second prompt, as the model saw it, is the first prompt, its answer, then the new turn.
    assert second["prompt"].startswith(first["prompt"] + first["answer"] + "<|im_end|>\n<|im_start|>user\n")
    assert "<|AUDIO|>x" in second["prompt"] and second["prompt_tokens"] > first["prompt_tokens"]
    # Both answers are the ones the batch path gives to the same conversations.
    user1 = _user(question_wav, QUESTION)
    assert first["answer"] == _batch_answer(loaded, [user1])
    assert second["answer"] == _batch_answer(
        loaded, [user1, _assistant(first["answer"]), _user(None, "And in French?")]
    )
    assert f"model> {first['answer']}" in result.stdout


def test_reset_bad_turns_and_system_prompt(loaded, question_wav, tmp_path):
    model, processor = loaded
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not audio\n")
    session = ChatSession(model, processor, GenerationConfig(max_new_tokens=4), system="Answer briefly.")
    out, err = io.StringIO(), io.StringIO()
    chat = Chat(session, out, err)
    turns = chat.loop(
        iter(
            [
                f"@{tmp_path / 'missing.wav'} hello",  # no such file: reported, nothing sent
                f"@{not_audio} what is this?",  # unreadable: reported, nothing sent
                "/bogus",
                "",
                f"@{question_wav}",
                "and then?",
                "/reset",
                "hello",
            ]
        )
    )
    errors = err.getvalue().splitlines()
    assert turns == 3 and len(errors) == 3
    assert "missing.wav" in errors[0] and "no such file" in errors[0]
    assert "notes.wav" in errors[1] and "unreadable" in errors[1]
    assert "unknown command '/bogus'" in errors[2]
    assert "(conversation cleared)" in out.getvalue()
    # After /reset only the system prompt and the last turn are left.
    assert [m["role"] for m in session.history] == ["user", "assistant"]
    assert session.conversation(session.history[0])[0]["content"][0]["text"] == "Answer briefly."


def test_a_conversation_longer_than_max_length_is_refused_until_reset(loaded):
    model, processor = loaded
    session = ChatSession(model, processor, GenerationConfig(max_new_tokens=2), max_length=80)
    session.reply(user_message(UserTurn((), "hi")))
    with pytest.raises(ChatInputError, match="max_length is 80.*/reset starts a new conversation"):
        session.reply(user_message(UserTurn((), " ".join(["word"] * 80))))
    assert len(session.history) == 2  # unchanged by the refused turn


def test_parse_line():
    assert parse_line('@a.wav @"b c.wav" Which is louder?') == UserTurn(
        ("a.wav", "b c.wav"), "Which is louder?"
    )
    assert parse_line("  @x.wav  ") == UserTurn(("x.wav",), None)
    assert parse_line("mail me at a@b.com") == UserTurn((), "mail me at a@b.com")
    assert parse_line("what is @here.wav about") == UserTurn(("here.wav",), "what is about")
    assert parse_line("   ") is None
    assert [parse_line(c) for c in ("/reset", " /quit ", "/help")] == ["reset", "quit", "help"]
    with pytest.raises(ChatInputError, match="unknown command '/rest'"):
        parse_line("/rest")
    with pytest.raises(ChatInputError, match="unknown command '/'"):
        parse_line("/")


def test_one_shot_bad_audio_fails_before_the_model_loads(tiny_checkpoint, tmp_path):
    result = run_script(
        "chat.py", f"checkpoint={tiny_checkpoint}", f"audio=[{tmp_path / 'nope.wav'}]", env=_env()
    )
    assert result.returncode == 78
    assert "nope.wav" in result.stderr and "no such file" in result.stderr
    assert "Loading weights" not in result.stderr and result.stdout == ""
