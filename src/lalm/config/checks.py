"""Config mistakes found before anything is built, and said in a line or two.

- `compose_config`: Hydra composition whose errors (a missing value, an unknown key, a wrong type, a
  config file that does not exist) come back as a ConfigError of one line, not Hydra's pages.
- `unknown_fields`: settings the typed schema does not have. Hydra's `+key=value` adds keys even to a
  structured config, and OmegaConf.to_object keeps them as stray attributes that nothing reads, so
  `+stage.task_weight={asr:3}` (for task_weights) would be silently ignored.
- `exit_on_input_error`: what scripts/ do with a ConfigError or ManifestError: the message, no
  traceback, exit code EXIT_CONFIG.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

from lalm.errors import ConfigError, ManifestError
from lalm.training.exits import EXIT_CONFIG

COMMAND_LINE = "invalid command line"
OVERRIDE_GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"
OTHER_RANKS_DELAY_S = 5.0


def closest(name: str, choices: Sequence[str]) -> str | None:
    """The choice `name` is most likely a typo of, if any is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(name: str, choices: Sequence[str], prefix: str = "") -> str:
    """' (did you mean <prefix><choice>?)' for the closest of `choices`, or '' when none is close."""
    choice = closest(name, choices)
    return f" (did you mean {prefix}{choice}?)" if choice else ""


def unknown_key(full_key: str, schema: type) -> str:
    """The message for a key that `schema` (a dataclass) does not have, with its known keys."""
    known = [f.name for f in dataclasses.fields(schema)]
    parent, _, name = full_key.rpartition(".")
    hint = did_you_mean(name, known, f"{parent}." if parent else "")
    return f"unknown key {full_key}{hint}; {schema.__name__} has: {', '.join(known)}"


def unknown_fields(node: Any, prefix: str = "") -> list[str]:
    """A message for every attribute of a dataclass tree that is not a field of its dataclass.

    Dict-typed fields (task_weights) hold arbitrary keys and are not dataclasses, so they are not
    searched; `stage` and `model` are checked against their concrete class.
    """
    if not dataclasses.is_dataclass(node) or isinstance(node, type):
        return []
    fields = [f.name for f in dataclasses.fields(node)]
    problems = [unknown_key(f"{prefix}{name}", type(node)) for name in vars(node) if name not in fields]
    for name in fields:
        problems += unknown_fields(getattr(node, name), f"{prefix}{name}.")
    return problems


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _hint_for_missing(key: str) -> str:
    if key == "output_dir":
        return "add output_dir=DIR to the command line (the run is written to DIR/<stage>/)"
    return f"add {key}=... to the command line"


def _describe_omegaconf(err: OmegaConfBaseException, override: str | None) -> str:
    key = getattr(err, "full_key", None) or ""
    schema = getattr(err, "object_type", None)
    if isinstance(err, MissingMandatoryValue):
        return f"Missing mandatory value: {key} ({_hint_for_missing(key)})"
    unknown = isinstance(err, ConfigAttributeError | ConfigKeyError) and "not in" in _first_line(err)
    if unknown and dataclasses.is_dataclass(schema) and isinstance(schema, type) and key:
        return unknown_key(key, schema)
    if isinstance(err, ValidationError):
        return f"{override or key}: {_first_line(err)}"
    return f"{key}: {_first_line(err)}" if key else _first_line(err)


def _hydra_lines(err: HydraException) -> str:
    """Hydra's own message without its search path, stack-trace advice and blank lines."""
    lines = []
    for line in str(err).strip().splitlines():
        if not line.strip() or line.startswith(("Config search path", "Set the environment")):
            break
        lines.append(line.strip())
    return " ".join(lines[:2]) or type(err).__name__


def describe_hydra_error(err: HydraException | OmegaConfBaseException) -> str:
    """The one line that matters of a Hydra or OmegaConf error raised while composing a config."""
    if isinstance(err, MissingConfigException):
        group, _, name = (err.missing_cfg_file or "").rpartition("/")
        options = [o for o in err.options or [] if not o.endswith("_schema")]
        if group:
            return (
                f"no config {group}/{name}{did_you_mean(name, options)}: "
                f"{group}= takes one of {', '.join(options)}"
            )
        return _hydra_lines(err)
    if isinstance(err, OverrideParseException):
        reason = [line for line in err.message.splitlines() if not line.startswith(("Error parsing", "See "))]
        return f"cannot parse {err.override!r}: {' '.join(reason)}; write key=value (see {OVERRIDE_GRAMMAR})"
    if isinstance(err, OmegaConfBaseException):
        return _describe_omegaconf(err, None)
    cause = err.__cause__
    if isinstance(cause, OmegaConfBaseException):
        override = _first_line(err).removeprefix("Error merging override ")
        described = _describe_omegaconf(cause, override if override != _first_line(err) else None)
        if not described.startswith("unknown key") and isinstance(cause, ConfigKeyError):
            return _hydra_lines(err)  # e.g. a dict key without '+': Hydra's own two lines say what to do
        return described
    return _hydra_lines(err)


def _unknown_group_choices(choices: DictConfig) -> list[str]:
    """Options of `optional` groups (experiment=...) that do not exist: Hydra skips them silently."""
    loader = GlobalHydra.instance().config_loader()
    problems = []
    for key, value in choices.items():
        group, choice = str(key), value
        if group.startswith("hydra/") or choice is None:
            continue
        options = [o for o in loader.get_group_options(group) if not o.endswith("_schema")]
        if choice not in options:
            problems.append(
                f"no config {group}/{choice}{did_you_mean(str(choice), options)}: "
                f"{group}= takes one of {', '.join(options)}"
            )
    return problems


def compose_config(config_dir: str | Path, config_name: str, overrides: Sequence[str]) -> Any:
    """The typed config (the schema's dataclasses) Hydra composes from `config_dir/config_name.yaml`
    and command-line overrides. Raises ConfigError with one line per mistake."""
    try:
        with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base=None):
            cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
            problems = _unknown_group_choices(cfg.hydra.runtime.choices)
        if problems:
            raise ConfigError(COMMAND_LINE, problems)
        with open_dict(cfg):
            del cfg["hydra"]  # Hydra's own settings; the schema does not describe them
        return OmegaConf.to_object(cfg)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(COMMAND_LINE, [describe_hydra_error(err)]) from err


@contextmanager
def exit_on_input_error() -> Iterator[None]:
    """A ConfigError or ManifestError becomes its message on stderr (no traceback) and exit code
    EXIT_CONFIG. Nothing else is caught: a SystemExit raised by the trainer keeps its own code."""
    try:
        yield
    except (ConfigError, ManifestError) as err:
        # Every rank finds the same mistakes. The launcher stops the other ranks as soon as one exits,
        # so local rank 0 prints at once and the others wait: usually they are stopped before they
        # print a copy, and a mistake only they see (node-local files) is still printed.
        if int(os.environ.get("LOCAL_RANK", "0")) > 0:
            time.sleep(OTHER_RANKS_DELAY_S)
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CONFIG) from None
