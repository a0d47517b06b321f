"""Checks of the model group (model=tiny|pretrained|from_components) before anything is built: the
folders a model is read from exist, and a tiny model's sizes fit together."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from lalm.config.mixture_checks import check
from lalm.config.model import FromComponentsConfig, PretrainedModelConfig, TinyModelConfig
from lalm.config.train import TrainConfig


def model_errors(cfg: TrainConfig) -> list[str]:
    """The model group's values (init_from, when given, replaces the model group)."""
    model = cfg.model
    if cfg.init_from is not None:
        return []
    if isinstance(model, PretrainedModelConfig):
        errors: list[str] = []
        if not (Path(model.path) / "config.json").is_file():
            errors.append(f"model.path={model.path!r} is not a model checkpoint (no config.json)")
        return errors
    if isinstance(model, FromComponentsConfig):
        return [
            f"model.{name}={getattr(model, name)!r} is not a directory"
            for name in ("whisper_dir", "llm_dir")
            if not Path(getattr(model, name)).is_dir()
        ]
    if isinstance(model, TinyModelConfig):
        return _tiny_model_errors(model)
    return [f"model: unknown model config {type(model).__name__}; select it with model=tiny|pretrained|..."]


def _tiny_model_errors(model: TinyModelConfig) -> list[str]:
    # Every integer of the tiny model is a size or a count, except the seed.
    sizes = [
        f.name for f in fields(model) if f.type in (int, "int") and f.name not in ("seed", "embedding_rows")
    ]
    errors = [f"model.{n} must be > 0, got {getattr(model, n)}" for n in sizes if getattr(model, n) <= 0]
    check(model.embedding_rows >= 0, f"model.embedding_rows must be >= 0, got {model.embedding_rows}", errors)
    check(
        model.init_device in ("cpu", "cuda"),
        f"model.init_device={model.init_device!r}: cpu|cuda (cuda only where there is a GPU)",
        errors,
    )
    if errors:
        return errors
    for whole, part in (
        ("encoder_dim", "encoder_heads"),
        ("llm_hidden_size", "llm_heads"),
        ("llm_heads", "llm_kv_heads"),
    ):
        check(
            getattr(model, whole) % getattr(model, part) == 0,
            f"model.{whole}={getattr(model, whole)} must be a multiple of model.{part}={getattr(model, part)}",
            errors,
        )
    for path in model.tokenizer_corpus:
        check(Path(path).is_file(), f"model.tokenizer_corpus: {path} does not exist", errors)
    return errors
