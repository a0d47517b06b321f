"""validate_data(): a TrainConfig against its manifests, before any model is built.

fewest_tokens / example_bounds bound an example's length from below, whatever the tokenizer. A clip
longer than the encoder's window is cut into windows whose tokens fill its one span
(lalm.data.features); their count is never below the one-window formula for the whole clip used here
(equal without overlap when the window is a multiple of 4 mel frames, as Whisper's 3,000 and every
whole-second window are; an overlap only adds tokens), so the bound holds for long clips too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lalm.config.checks import did_you_mean
from lalm.config.mixture_checks import check
from lalm.config.model import TinyModelConfig
from lalm.config.train import TrainConfig, manifest_path
from lalm.errors import ConfigError
from lalm.stages.registry import get_stage, load

# Lower bounds on an example's length in tokens, whatever the tokenizer: every rendered message has
# <|im_start|>, its role line and <|im_end|>; every clip <|audio_bos|> and <|audio_eos|> around its
# <|AUDIO|> tokens; and a conversation without a system turn gets the default one (lalm.data.chat).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_CLIP = 2
HOP_LENGTH = 160  # mel hop at 16 kHz (Whisper's and the tiny model's feature extractor): 100 frames/s


def _fewest_samples(ref: dict[str, Any], tolerance_s: float) -> int:
    """The fewest 16-kHz samples a clip decodes to: it may fall short of its manifest duration by up
    to tolerance_s (more is dropped as duration_mismatch). Without a duration, no bound (0)."""
    from lalm.data.audio import SAMPLE_RATE  # imported here: lalm.data loads numpy and soundfile

    duration = ref.get("duration")
    return 0 if duration is None else max(0, math.floor((duration - tolerance_s) * SAMPLE_RATE))


def _audio_tokens(samples: int) -> int:
    # Imported here: lalm.data.chat loads torch and transformers, which composing a config must not wait for.
    from lalm.data.chat import audio_token_count, mel_frame_count

    return max(0, audio_token_count(mel_frame_count(samples, HOP_LENGTH))) if samples > 0 else 0


def fewest_tokens(messages: list[dict[str, Any]], tolerance_s: float) -> tuple[int, int]:
    """(a lower bound on the tokens of a rendered conversation, the fewest samples of its longest
    clip), from normalised manifest messages. Never above the collator's count, so a config refused
    on it cannot work (tests compare it with the real collator)."""
    has_system = bool(messages) and messages[0]["role"] == "system"
    tokens = (len(messages) + (0 if has_system else 1)) * TOKENS_PER_MESSAGE
    longest = 0
    for message in messages:
        for item in message["content"]:
            if item["type"] == "audio":
                samples = _fewest_samples(item["audio"], tolerance_s)
                tokens += TOKENS_PER_CLIP + _audio_tokens(samples)
                longest = max(longest, samples)
    return tokens, longest


_ANSWER: dict[str, Any] = {"role": "assistant", "content": []}  # text left out: it only adds tokens


def _column(records: Any, column: str) -> Iterator[Any]:
    for batch in records.select_columns([column]).iter(batch_size=1024):
        yield from batch[column]


def pretrain_conversations(records: Any) -> Iterator[list[dict[str, Any]]]:
    """Each pretrain record as its collator renders it: a user turn with the clip, and the answer."""
    for audio in _column(records, "audio"):
        yield [{"role": "user", "content": [{"type": "audio", "audio": audio}]}, _ANSWER]


def sft_conversations(records: Any) -> Iterator[list[dict[str, Any]]]:
    """Each SFT record's messages."""
    yield from _column(records, "messages")


def dpo_conversations(records: Any) -> Iterator[list[dict[str, Any]]]:
    """Each DPO record's prompt and one response (the collator renders each response after it)."""
    for prompt in _column(records, "prompt"):
        yield [*prompt, _ANSWER]


def example_bounds(stage: str, records: Any, tolerance_s: float) -> Iterator[tuple[int, int]]:
    """fewest_tokens of each record of a validated manifest (`datasets.Dataset`), rendered as the
    stage's collator renders it (its `bound_conversations`, lalm.stages.registry)."""
    for messages in load(get_stage(stage).bound_conversations)(records):
        yield fewest_tokens(messages, tolerance_s)


def _window_samples(cfg: TrainConfig) -> int | None:
    """The encoder's window in samples (a longer clip is cut into windows), where the config tells
    without loading a model: the tiny model's window_seconds, or a checkpoint's preprocessor_config."""
    from lalm.data.audio import SAMPLE_RATE

    if cfg.init_from is None and isinstance(cfg.model, TinyModelConfig):
        return cfg.model.window_seconds * SAMPLE_RATE
    folder = cfg.init_from or getattr(cfg.model, "path", None) or getattr(cfg.model, "whisper_dir", None)
    try:
        extractor = json.loads((Path(str(folder)) / "preprocessor_config.json").read_text())
        return int(extractor["n_samples"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _overlap_errors(cfg: TrainConfig) -> list[str]:
    """data.long_audio_overlap_s must leave each window a step forward (the collator refuses it too)."""
    from lalm.data.audio import SAMPLE_RATE

    window, overlap = _window_samples(cfg), cfg.data.long_audio_overlap_s
    if window is None or round(overlap * SAMPLE_RATE) < window:
        return []
    return [
        f"data.long_audio_overlap_s={overlap} is not shorter than the encoder's window "
        f"({window / SAMPLE_RATE:g} s): long clips could not advance; lower it"
    ]


def _manifest_name(cfg: TrainConfig, name: str) -> str:
    """How messages name a manifest: its path, or with data.mixture the train sources'."""
    if name == "train_manifest" and cfg.data.mixture.sources is not None:
        sources = ", ".join(str(source.path) for source in cfg.data.mixture.sources)
        return f"the train sources of data.mixture ({sources})"
    return manifest_path(cfg, name)


def _length_errors(cfg: TrainConfig, records: Any, name: str) -> list[str]:
    """A manifest none of whose examples fits data.max_length and data.max_audio_seconds: every one
    would be dropped by the collator. (A clip longer than the encoder's window fits: it is windowed.)"""
    from lalm.data.audio import SAMPLE_RATE

    limit, seconds = cfg.data.max_length, cfg.data.max_audio_seconds
    fewest_tokens_seen, fits_audio, fits_length = None, False, False
    for tokens, longest in example_bounds(cfg.stage.name, records, cfg.data.duration_tolerance_s):
        short_enough = longest <= seconds * SAMPLE_RATE
        if short_enough and tokens <= limit:
            return []
        fits_audio |= short_enough
        fits_length |= tokens <= limit
        fewest_tokens_seen = tokens if fewest_tokens_seen is None else min(fewest_tokens_seen, tokens)
    path = _manifest_name(cfg, name)
    if not fits_length:
        return [
            f"data.max_length={limit} is shorter than every example of {path} (the shortest needs at "
            f"least {fewest_tokens_seen} tokens): raise data.max_length"
        ]
    if not fits_audio:
        return [
            f"every example of {path} has a clip longer than data.max_audio_seconds={seconds:g}: raise it"
        ]
    return [
        f"no example of {path} fits both data.max_length={limit} and data.max_audio_seconds={seconds:g}: "
        "the short enough ones have clips too long"
    ]


def _task_weight_errors(weights: dict[str, float], tasks: list[str | None], where: str) -> list[str]:
    """task_weights against the tasks a manifest has (lalm.stages.lm.task_groups would refuse later)."""
    present = sorted({t for t in tasks if t is not None})
    errors = [
        f"stage.task_weights names {task!r}{did_you_mean(task, present)}, which {where} does not have; "
        f"its tasks are {present}"
        for task in sorted(set(weights) - set(present))
    ]
    if tasks and not errors and sum(weights.get(t, 1.0) if t is not None else 1.0 for t in tasks) <= 0:
        errors.append(f"stage.task_weights {weights} leaves none of the tasks of {where} in")
    return errors


def pretrain_data_errors(cfg: TrainConfig, records: Any) -> list[str]:
    """The tasks that stage.task_weights names must exist in the train manifest."""
    weights = dict(getattr(cfg.stage, "task_weights", {}))
    path = _manifest_name(cfg, "train_manifest")
    return _task_weight_errors(weights, list(records["task"]), path) if weights else []


def sft_data_errors(cfg: TrainConfig, records: Any) -> list[str]:
    """What the SFT sampling stream draws from (chat and analysis modes by chat_weight, analysis tasks
    by task_weights) must exist in the train manifest."""
    stage = cfg.stage
    path = _manifest_name(cfg, "train_manifest")
    weights = dict(getattr(stage, "task_weights", {}))
    modes, tasks = list(records["mode"]), list(records["task"])
    analysis = [task for mode, task in zip(modes, tasks, strict=True) if mode == "analysis"]
    errors: list[str] = []
    check(
        stage.chat_weight == 0 or "chat" in modes,
        f"stage.chat_weight={stage.chat_weight} but {path} has no chat-mode examples: set stage.chat_weight=0",
        errors,
    )
    check(
        stage.chat_weight == 1 or bool(analysis),
        f"stage.chat_weight={stage.chat_weight} leaves {1 - stage.chat_weight:g} of each batch to analysis "
        f"mode, but {path} has no analysis-mode examples: set stage.chat_weight=1",
        errors,
    )
    if weights:  # the stream groups analysis mode by task whatever chat_weight is
        errors += _task_weight_errors(weights, analysis, f"analysis mode of {path}")
    return errors


def _stage_data_errors(cfg: TrainConfig, records: Any) -> list[str]:
    """The stage's own settings against the train manifest (its `data_errors`, lalm.stages.registry)."""
    ref = get_stage(cfg.stage.name).data_errors
    return [] if ref is None else load(ref)(cfg, records)


def validate_data(cfg: TrainConfig, train_records: Any, dev_records: Any) -> None:
    """Config mistakes only the manifests (or the model's window) reveal, all in one ConfigError, before
    any model is built: a data.max_length or data.max_audio_seconds no example fits, an overlap of long
    clips' windows as long as the window, stage.task_weights naming a task the train manifest does not
    have, an SFT chat_weight asking for a mode with no examples.

    The records are the validated manifests (`datasets.Dataset`, as load_manifest returns them).
    Lengths are lower bounds (see fewest_tokens), so a config that can work is never refused.
    """
    errors = [
        *_overlap_errors(cfg),
        *_length_errors(cfg, train_records, "train_manifest"),
        *_length_errors(cfg, dev_records, "dev_manifest"),
        *_stage_data_errors(cfg, train_records),
    ]
    if errors:
        raise ConfigError("the config does not fit the data", errors)
