"""Each stage's own checks of its settings, found before any data is read.

The registry names them (StageSpec.config_errors) and lalm.config.validation.validate calls the one
of `cfg.stage`'s stage, so a new stage brings its checks with its registration. What the settings
mean against the train manifest is lalm.config.data_checks; what every stage shares (what trains,
LoRA, optimizer, ...) stays in lalm.config.validation.
"""

from __future__ import annotations

from collections.abc import Mapping

from lalm.config.checks import did_you_mean
from lalm.config.mixture_checks import check, finite
from lalm.config.train import DPO_LOSSES, TrainConfig
from lalm.data.tasks import task_names


def _task_weight_errors(weights: Mapping[str, float]) -> list[str]:
    """stage.task_weights (pretrain and sft): every weight a finite number >= 0."""
    errors: list[str] = []
    check(
        all(finite(w) and w >= 0 for w in weights.values()),
        f"stage.task_weights must be >= 0, got {dict(weights)}",
        errors,
    )
    return errors


def pretrain_errors(cfg: TrainConfig) -> list[str]:
    """task_weights name registered tasks (lalm.data.tasks) and leave one in; ctc_weight >= 0."""
    stage = cfg.stage
    weights = dict(stage.task_weights)
    errors = _task_weight_errors(weights)
    tasks = task_names()
    left_out = {task for task, weight in weights.items() if weight == 0}
    check(bool(set(tasks) - left_out), f"stage.task_weights must leave some task in, got {weights}", errors)
    for task in sorted(set(weights) - set(tasks)):
        errors.append(
            f"stage.task_weights names unknown tasks [{task!r}]{did_you_mean(task, tasks)}; "
            f"tasks are {list(tasks)}"
        )
    check(
        finite(stage.ctc_weight) and stage.ctc_weight >= 0,
        f"stage.ctc_weight must be >= 0, got {stage.ctc_weight}",
        errors,
    )
    return errors


def sft_errors(cfg: TrainConfig) -> list[str]:
    """task_weights >= 0 (SFT tasks are free labels, checked against the manifest by validate_data)
    and chat_weight in [0, 1]."""
    stage = cfg.stage
    errors = _task_weight_errors(stage.task_weights)
    check(
        0 <= stage.chat_weight <= 1,
        f"stage.chat_weight must be in [0, 1], got {stage.chat_weight}",
        errors,
    )
    return errors


def dpo_errors(cfg: TrainConfig) -> list[str]:
    """init_from (the policy and its reference), the loss and its settings, the reference cache, and
    with LoRA only adapters trained."""
    stage = cfg.stage
    errors: list[str] = []
    check(
        cfg.init_from is not None,
        "stage=dpo needs init_from=<sft output>/sft/final (policy and reference)",
        errors,
    )
    check(stage.loss in DPO_LOSSES, f"stage.loss={stage.loss!r}: use {'|'.join(DPO_LOSSES)}", errors)
    check(finite(stage.beta) and stage.beta > 0, f"stage.beta must be > 0, got {stage.beta}", errors)
    if stage.loss == "robust":
        # ε = 0 makes robust DPO plain DPO: almost surely the default left in place, not a choice.
        check(
            0 < stage.label_smoothing < 0.5,
            "stage.loss=robust needs stage.label_smoothing in (0, 0.5), the share of preference labels "
            f"assumed flipped (e.g. 0.1), got {stage.label_smoothing}; with 0 it is stage.loss=sigmoid",
            errors,
        )
    else:
        check(0 <= stage.label_smoothing < 0.5, "stage.label_smoothing must be in [0, 0.5)", errors)
    check(stage.rpo_alpha >= 0, f"stage.rpo_alpha must be >= 0, got {stage.rpo_alpha}", errors)
    check(
        stage.cache_reference in ("auto", "always", "never"),
        f"stage.cache_reference={stage.cache_reference!r}: use auto|always|never",
        errors,
    )
    check(
        not (stage.lora.enabled and (stage.train_encoder or stage.train_projector)),
        "DPO with LoRA uses the policy without adapters as its reference, so only adapters may train: "
        "set stage.train_encoder=false stage.train_projector=false",
        errors,
    )
    return errors
