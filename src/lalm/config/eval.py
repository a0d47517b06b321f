"""Typed configs of scripts/evaluate.py (kept apart from lalm.eval, so that loading the config schemas
does not import the metrics libraries)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class GenerationConfig:
    """Greedy by default (num_beams 1, no sampling), as the report's ASR/S2TT numbers are."""

    max_new_tokens: int = 64
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0


@dataclass
class JudgeConfig:
    """An OpenAI-compatible chat endpoint that grades chat answers (lalm.eval.judge); none: skipped."""

    endpoint: str | None = None  # e.g. http://localhost:8000/v1
    model: str = "gpt-4o"
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0


@dataclass
class EvalConfig:
    """scripts/evaluate.py: a checkpoint (any stage's final/) on one or more eval manifests."""

    checkpoint: str = "???"
    manifests: list[str] = field(default_factory=list)
    output_dir: str = "???"
    batch_size: int = 8
    max_examples: int = 0  # per manifest; 0 = all
    tasks: list[str] = field(default_factory=list)  # generation: only examples of these tasks; [] = all
    prompt_seed: int = 0
    reference: str | None = None  # DPO reference for implicit rewards (the SFT model)
    beta: float = 0.1
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)


def _chat_generation() -> GenerationConfig:
    return GenerationConfig(max_new_tokens=256)  # a chat answer runs longer than a label or a transcript


@dataclass
class ChatConfig:
    """scripts/chat.py: talk to a checkpoint. One-shot when `text` or `audio` is given (the answer is
    printed and the script ends, unless interactive=true keeps the conversation going); otherwise a
    loop over the lines of stdin (lalm.eval.chat documents its `@file.wav` and `/reset` syntax)."""

    checkpoint: str = "???"
    audio: list[str] = field(default_factory=list)  # clips of the first user turn, in order
    text: str | None = None  # its instruction; none with audio: voice chat (the instruction is spoken)
    system: str | None = None  # a system prompt; none: transformers' default "You are a helpful assistant."
    interactive: bool = False
    transcript: str | None = None  # a JSONL file: one line per answered turn (its prompt and answer)
    max_length: int = 4096  # prompt tokens, the whole conversation so far included
    generation: GenerationConfig = field(default_factory=_chat_generation)


@dataclass
class GenerateConfig:
    """scripts/generate.py: answers of a checkpoint to every example of a manifest of any stage."""

    checkpoint: str = "???"
    manifest: str = "???"
    output: str = "???"  # JSONL: one line per example, in manifest order
    batch_size: int = 8
    max_examples: int = 0  # 0 = all
    prompt_seed: int = 0  # pretrain manifests: which instruction of the prompt library each example gets
    max_length: int = 4096  # prompt tokens; a longer example is dropped and reported
    generation: GenerationConfig = field(default_factory=GenerationConfig)
