"""The stage registry: everything lalm does differently for pretrain, sft and dpo, in one place.

A stage is registered once, as a StageSpec, and every part of lalm reads it from here:

- config validation: which config class `stage=<name>` must compose to, and the stage's own checks of
  its settings (lalm.config.validation, the checks in lalm.config.stage_checks);
- manifest reading: how a raw record is validated and normalised, and which keys make a record look
  like this stage's, so that a manifest given to the wrong stage is named as such (lalm.data.manifest);
- the dataset: how a validated record becomes the example the collator takes (lalm.data.dataset);
- build: the collator class and the Stage plug-in with its reference model (lalm.training.build);
- the checks of a config against its data: the conversation that bounds an example's length, and
  the stage's own settings against the train manifest (lalm.config.data_checks);
- evaluation: its guess of a manifest's kind from its first record, how a manifest of the stage is
  evaluated (generation or preference), and what a record says about its expected answer, which
  both scripts/evaluate.py and scripts/generate.py write beside each prediction (lalm.eval.runner,
  lalm.eval.batch_generation).

Adding a stage is one `register_stage(StageSpec(...))`. The parts that need torch or datasets are
named as "module:attribute" and imported when first used (`load`): lalm.config reads the registry for
stage names, config classes and checks, and composing a config must not wait for torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from lalm.config.train import DpoStageConfig, PretrainStageConfig, SftStageConfig, StageConfig

# How evaluation scores a manifest (lalm.eval.runner.run_evaluation): "generation" generates an answer
# to each example and scores it against the reference (predictions.jsonl, metrics by task); "preference"
# compares the log-probabilities of each pair's chosen and rejected answers (preferences.jsonl,
# preference/... metrics), with the stage's collator, which must then yield pairs as dpo's does.
EVALUATIONS = ("generation", "preference")


@dataclass(frozen=True)
class StageSpec:
    """One stage. The `str` parts are "module:attribute" references, resolved by `load`:

    validate_record     (raw record, manifest folder: Path, check_files: bool) -> normalised record;
                        raises lalm.data.manifest.InvalidRecord(reason) for a bad line
    to_example          (validated record, prompt_seed: int) -> the example's stage fields, audio not
                        yet decoded: its conversation under "messages" (a preference pair's under
                        "prompt"), plus what the collator or the sample stream reads ("task", "mode",
                        "chosen", "rejected"); the dataset adds "id" and "source" and decodes audio
    collator            class, (processor, CollatorConfig) -> callable on a list of examples
    build_stage         (TrainConfig, special token ids) -> (Stage, reference model or None)
    bound_conversations (validated records: datasets.Dataset) -> each record's conversation as the
                        collator renders it, text items optional (lalm.config.data_checks.fewest_tokens)
    reference_fields    (validated record) -> what the record says about its expected answer: "task"
                        (a label or None), "language" and "target_language" (None where the record
                        names none), "reference" (the answer a prediction is scored against), and where
                        the stage has them "mode" (the sft mode) and "rejected" (a pair's other answer);
                        evaluation's predictions.jsonl and generate.py's lines each keep their keys
    config_errors       (TrainConfig) -> errors of the stage's own settings, found before any data is
                        read (lalm.config.validation.validate); None: the stage has none
    data_errors         (TrainConfig, train records) -> errors of the stage's own settings against the
                        train manifest; None: the stage has none

    `evaluation` is not a reference but one of EVALUATIONS: how evaluation scores the stage's manifests.
    """

    name: str
    config: type[StageConfig]
    record_keys: tuple[str, ...]  # every record of the stage has them: "this looks like a <name> manifest"
    records_are: str  # what the stage needs, as the wrong-stage message says it
    validate_record: str
    to_example: str
    collator: str
    build_stage: str
    bound_conversations: str
    evaluation: str
    reference_fields: str
    config_errors: str | None = None
    data_errors: str | None = None
    article: str = "a"  # "an sft manifest"

    def __post_init__(self) -> None:
        if not self.record_keys:
            raise ValueError(f"stage {self.name!r}: record_keys must name the keys its records have")
        if self.evaluation not in EVALUATIONS:
            raise ValueError(
                f"stage {self.name!r}: evaluation must be one of {list(EVALUATIONS)}, got {self.evaluation!r}"
            )

    def parts(self) -> dict[str, str]:
        """Every "module:attribute" part of the stage, by field name."""
        refs = {
            "validate_record": self.validate_record,
            "to_example": self.to_example,
            "collator": self.collator,
            "build_stage": self.build_stage,
            "bound_conversations": self.bound_conversations,
            "reference_fields": self.reference_fields,
        }
        optional = {"config_errors": self.config_errors, "data_errors": self.data_errors}
        return {**refs, **{part: ref for part, ref in optional.items() if ref is not None}}


def build_collator(stage: str, processor: Any, config: Any) -> Any:
    """The stage's collator (`config`: lalm.data.collators.CollatorConfig)."""
    return load(get_stage(stage).collator)(processor, config)


def load(ref: str) -> Any:
    """The object a "module:attribute" reference names, its module imported if it is not yet."""
    module, sep, attribute = ref.partition(":")
    if not sep or not module or not attribute:
        raise ValueError(f"a stage part must be 'module:attribute', got {ref!r}")
    return getattr(importlib.import_module(module), attribute)


_STAGES: dict[str, StageSpec] = {}


def register_stage(spec: StageSpec, *, replace: bool = False) -> StageSpec:
    """Add a stage to the registry; registering a name twice is an error unless `replace`."""
    if spec.name in _STAGES and not replace:
        raise ValueError(f"stage {spec.name!r} is already registered")
    _STAGES[spec.name] = spec
    return spec


def unregister_stage(name: str) -> None:
    """Remove a stage (tests register throwaway ones)."""
    del _STAGES[name]


def stage_names() -> tuple[str, ...]:
    """Every registered stage, in registration order (the order of the stages' hand-off)."""
    return tuple(_STAGES)


def get_stage(name: str) -> StageSpec:
    """The stage registered as `name`; ValueError naming the registered ones otherwise."""
    if name not in _STAGES:
        raise ValueError(f"unknown stage {name!r}; expected one of {list(_STAGES)}")
    return _STAGES[name]


def guess_stage(record: dict[str, Any]) -> str:
    """The stage a raw record most likely belongs to: the one with the largest share of its
    `record_keys` present, the first registered on a tie (pretrain, when the record has none of any
    stage's keys). A share, not a count: an sft record that also names its `task` stays sft."""
    names = list(_STAGES)
    keys = [_STAGES[name].record_keys for name in names]
    shares = [sum(key in record for key in k) / len(k) for k in keys]
    return names[shares.index(max(shares))]


_MANIFEST = "lalm.data.manifest"
_DATASET = "lalm.data.dataset"
_COLLATORS = "lalm.data.collators"
_BUILD = "lalm.training.build"
_CHECKS = "lalm.config.data_checks"
_STAGE_CHECKS = "lalm.config.stage_checks"
_EVAL = "lalm.eval.runner"

register_stage(
    StageSpec(
        name="pretrain",
        config=PretrainStageConfig,
        record_keys=("task", "audio", "text"),
        records_are="task/audio/text records",
        validate_record=f"{_MANIFEST}:validate_pretrain",
        to_example=f"{_DATASET}:pretrain_example",
        collator=f"{_COLLATORS}:ConversationCollator",
        build_stage=f"{_BUILD}:build_lm_stage",
        bound_conversations=f"{_CHECKS}:pretrain_conversations",
        evaluation="generation",
        reference_fields=f"{_EVAL}:pretrain_reference",
        config_errors=f"{_STAGE_CHECKS}:pretrain_errors",
        data_errors=f"{_CHECKS}:pretrain_data_errors",
    )
)
register_stage(
    StageSpec(
        name="sft",
        config=SftStageConfig,
        record_keys=("messages", "mode"),
        records_are="mode/messages records",
        validate_record=f"{_MANIFEST}:validate_sft",
        to_example=f"{_DATASET}:sft_example",
        collator=f"{_COLLATORS}:ConversationCollator",
        build_stage=f"{_BUILD}:build_lm_stage",
        bound_conversations=f"{_CHECKS}:sft_conversations",
        evaluation="generation",
        reference_fields=f"{_EVAL}:sft_reference",
        config_errors=f"{_STAGE_CHECKS}:sft_errors",
        data_errors=f"{_CHECKS}:sft_data_errors",
        article="an",
    )
)
register_stage(
    StageSpec(
        name="dpo",
        config=DpoStageConfig,
        record_keys=("prompt", "chosen", "rejected"),
        records_are="prompt/chosen/rejected records",
        validate_record=f"{_MANIFEST}:validate_dpo",
        to_example=f"{_DATASET}:dpo_example",
        collator=f"{_COLLATORS}:PreferenceCollator",
        build_stage=f"{_BUILD}:build_dpo_stage",
        bound_conversations=f"{_CHECKS}:dpo_conversations",
        evaluation="preference",
        reference_fields=f"{_EVAL}:dpo_reference",
        config_errors=f"{_STAGE_CHECKS}:dpo_errors",
    )
)
