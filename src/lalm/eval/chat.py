"""Talk to a checkpoint (scripts/chat.py): user turns in, answers streamed out, the conversation kept.

Both modes of the Qwen2-Audio report work the same way: voice chat is a user turn of audio only (the
instruction is spoken), audio analysis a turn of audio and a text instruction. Every turn's prompt is
the whole conversation so far (the system prompt, earlier clips and the model's own answers), built by
the evaluation's GenerationCollator, so chat and scripts/generate.py give the same answer to the same
conversation.

Interactive lines (stdin) follow HELP below: text, `@file.wav` clips, /reset, /quit, /help. A word
that starts with @ is always a clip: a file that cannot be used (missing, unreadable, too long) is
reported and that turn is not sent; the conversation stays as it was.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch

from lalm.config.eval import ChatConfig, GenerationConfig
from lalm.data.audio import AudioRef, load_audio
from lalm.data.collators import LONGER_THAN_MAX_LENGTH
from lalm.errors import LalmInputError
from lalm.eval.generation import WriterStreamer, conversation_inputs, generate_texts, load_for_generation
from lalm.models.tokenizer import AUDIO

Message = dict[str, Any]

# What /help prints: the syntax of an input line.
HELP = """\
    What is said?                  text only
    @clip.wav                      audio only: voice chat
    @a.wav @b.wav Which is louder? clips first (in the order given), then the text: audio analysis
    @"my clip.wav" What is it?     a path with spaces, quoted
    /reset                         forget the conversation (the system prompt stays)
    /quit                          end, as does the end of the input
    /help                          this list
"""
COMMANDS = ("reset", "quit", "help")
# `@"path with spaces"` or `@path`, at the start of the line or after whitespace (so "a@b" is text).
_CLIP = re.compile(r'(?:(?<=\s)|^)@(?:"([^"]+)"|(\S+))')
_AUDIO_RUN = re.compile(f"(?:{re.escape(AUDIO)})+")


class ChatInputError(LalmInputError):
    """A user turn that cannot be answered: an unknown command, an empty turn, or a prompt that does
    not fit (more than max_length tokens, a clip the collator refuses)."""


@dataclass(frozen=True)
class UserTurn:
    """What a user typed: clip paths (in order) and the text around them (None if there is none)."""

    audio: tuple[str, ...]
    text: str | None


@dataclass
class Answer:
    """One answered turn: the conversation the model was given (ending with the user turn), the prompt
    as the model saw it (decoded, each run of audio tokens shown once with its length) and the answer."""

    messages: list[Message]
    prompt: str
    prompt_tokens: int
    text: str


def parse_line(line: str) -> UserTurn | str | None:
    """An input line -> a command name ("reset", "quit", "help"), a UserTurn, or None for a blank line.

    >>> parse_line('@a.wav @"b c.wav" Which is louder?')
    UserTurn(audio=('a.wav', 'b c.wav'), text='Which is louder?')
    """
    stripped = line.strip()
    if not stripped:
        return None
    if stripped.startswith("/"):
        name = stripped[1:].split()[0] if len(stripped) > 1 else ""
        if name not in COMMANDS:
            raise ChatInputError(f"unknown command {stripped.split()[0]!r}; commands: /reset /quit /help")
        return name
    audio = tuple(quoted or bare for quoted, bare in _CLIP.findall(stripped))
    text = " ".join(_CLIP.sub(" ", stripped).split())
    return UserTurn(audio, text or None)


def user_message(turn: UserTurn) -> Message:
    """The turn as a user message with its clips decoded (16 kHz mono); AudioLoadError for a clip that
    cannot be used, ChatInputError for a turn with neither audio nor text."""
    if not turn.audio and not turn.text:
        raise ChatInputError("nothing to send: give text, audio (@file.wav), or both")
    content: list[dict[str, Any]] = []
    for path in turn.audio:
        ref = AudioRef(str(Path(path).expanduser().resolve()))
        content.append({"type": "audio", "waveform": load_audio(ref), "file": ref.path})
    if turn.text:
        content.append({"type": "text", "text": turn.text})
    return {"role": "user", "content": content}


def shown_prompt(processor: Any, input_ids: torch.Tensor) -> str:
    """(L,) prompt ids -> text, with each run of <|AUDIO|> written once as <|AUDIO|>xN."""
    text = processor.tokenizer.decode(input_ids.tolist(), skip_special_tokens=False)
    return _AUDIO_RUN.sub(lambda run: f"{AUDIO}x{len(run.group(0)) // len(AUDIO)}", text)


class ChatSession:
    """A conversation with a loaded model: the turns so far, and one model.generate per user turn."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        generation: GenerationConfig,
        system: str | None = None,
        max_length: int = 4096,
    ) -> None:
        self.model, self.processor, self.generation = model, processor, generation
        self.system, self.max_length = system, max_length
        self.history: list[Message] = []

    def conversation(self, user: Message) -> list[Message]:
        """The messages of the next prompt: the system prompt (if set), the turns so far, `user`."""
        system = (
            [{"role": "system", "content": [{"type": "text", "text": self.system}]}] if self.system else []
        )
        return [*system, *self.history, user]

    @torch.no_grad()
    def reply(self, user: Message, out: TextIO | None = None, prefix: str = "") -> Answer:
        """Answer `user` after the turns so far, streaming `prefix` and the answer to `out` (one line;
        written whole after generation when num_beams > 1, which transformers' streamers do not
        support), and keep both turns. ChatInputError if the prompt does not fit (nothing is written
        then, and the conversation is unchanged)."""
        messages = self.conversation(user)
        batch = conversation_inputs(self.processor, messages, self.max_length)
        if batch["dropped"]:
            dropped = batch["dropped"][0]
            hint = (
                " (/reset starts a new conversation)" if dropped["reason"] == LONGER_THAN_MAX_LENGTH else ""
            )
            raise ChatInputError(f"cannot answer this turn: {dropped['detail']}{hint}")
        if out is not None:
            out.write(prefix)
            out.flush()
        streams = out is not None and self.generation.num_beams == 1
        streamer = WriterStreamer(self.processor, out) if streams and out is not None else None
        text = generate_texts(self.model, self.processor, batch, self.generation, streamer)[0]
        if out is not None and streamer is None:
            out.write(text + "\n")
            out.flush()
        self.history += [user, {"role": "assistant", "content": [{"type": "text", "text": text}]}]
        prompt_ids = batch["input_ids"][0]
        return Answer(messages, shown_prompt(self.processor, prompt_ids), len(prompt_ids), text)

    def reset(self) -> None:
        self.history = []


def transcript_record(turn: int, answer: Answer) -> dict[str, Any]:
    """A transcript line: {"turn", "messages" (audio items as {"type": "audio", "audio": path}),
    "prompt", "prompt_tokens", "answer"}."""
    messages = [
        {
            "role": m["role"],
            "content": [
                {"type": "audio", "audio": item["file"]} if item["type"] == "audio" else dict(item)
                for item in m["content"]
            ],
        }
        for m in answer.messages
    ]
    return {
        "turn": turn,
        "messages": messages,
        "prompt": answer.prompt,
        "prompt_tokens": answer.prompt_tokens,
        "answer": answer.text,
    }


def read_lines(stream: TextIO, out: TextIO) -> Iterator[str]:
    """stdin's lines without their newline. At a terminal each read is prompted with `you> `; from a
    pipe or file each line is echoed after `you> `, so that the output reads as a transcript."""
    terminal = stream.isatty()
    while True:
        if terminal:
            out.write("you> ")
            out.flush()
        line = stream.readline()
        if not line:
            return
        line = line.rstrip("\n")
        if not terminal:
            out.write(f"you> {line}\n")
        yield line


class Chat:
    """The conversation loop around a ChatSession: commands, errors reported without ending the
    conversation, and the optional transcript (one JSON line per answered turn)."""

    def __init__(
        self, session: ChatSession, out: TextIO, err: TextIO, transcript: TextIO | None = None
    ) -> None:
        self.session, self.out, self.err, self.transcript = session, out, err, transcript
        self.turns = 0

    def answer(self, user: Message, prefix: str = "model> ") -> Answer:
        answer = self.session.reply(user, self.out, prefix)
        self.turns += 1
        if self.transcript is not None:
            self.transcript.write(
                json.dumps(transcript_record(self.turns, answer), ensure_ascii=False) + "\n"
            )
            self.transcript.flush()
        return answer

    def step(self, line: str) -> bool:
        """Handle one input line; False when the conversation is to end (/quit)."""
        try:
            parsed = parse_line(line)
            if parsed == "quit":
                return False
            if parsed == "reset":
                self.session.reset()
                self.out.write("(conversation cleared)\n")
            elif parsed == "help":
                self.out.write(HELP + "\n")
            elif isinstance(parsed, UserTurn):
                self.answer(user_message(parsed))
        except LalmInputError as error:
            self.err.write(f"error: {error}\n")
        return True

    def loop(self, lines: Iterator[str]) -> int:
        """Handle lines until /quit or their end; returns the number of answered turns."""
        for line in lines:
            if not self.step(line):
                break
        return self.turns


def first_turn(cfg: ChatConfig) -> Message | None:
    """The user turn given on the command line (audio= and text=), its clips decoded; None if neither."""
    text = cfg.text.strip() if cfg.text else None
    if not cfg.audio and not text:
        return None
    return user_message(UserTurn(tuple(cfg.audio), text))


def run_chat(cfg: ChatConfig, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    """scripts/chat.py: one answer when text or audio is given (then the loop too with interactive=true),
    else the loop over stdin. Bad input (a clip, a too-long prompt) raises LalmInputError in one-shot
    use; in the loop it is reported and the conversation goes on. Returns the number of answered turns."""
    first = first_turn(cfg)  # clips are read before the model is loaded: a bad path fails at once
    model, processor = load_for_generation(cfg.checkpoint)
    session = ChatSession(model, processor, cfg.generation, cfg.system, cfg.max_length)
    with ExitStack() as stack:
        transcript = None
        if cfg.transcript:
            transcript = stack.enter_context(Path(cfg.transcript).open("w", encoding="utf-8"))
        chat = Chat(session, stdout, stderr, transcript)
        if first is not None and not cfg.interactive:
            chat.answer(first, prefix="")
            return chat.turns
        if first is not None:
            chat.answer(first)
        return chat.loop(read_lines(stdin, stdout))
