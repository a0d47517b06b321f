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
