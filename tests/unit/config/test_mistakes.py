"""Every likely mistake is refused by scripts/train.py before any model is built: one case each.

Each case runs the real entry in this process (scripts/train.py's main: Hydra composition, then
build_trainer, which validates the config, reads the manifests and checks the config against them)
with init_distributed and build_model replaced by stand-ins that fail the test if they are reached.
It asserts the message, exit code EXIT_CONFIG and that nothing was written. The command-line
(Hydra-level) mistakes also run scripts/train.py in a subprocess: a short message, exit code 78, no
traceback. A valid config of each stage reaches the stand-ins, so a refusal is never vacuous.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

from lalm.data.manifest import read_manifest_records
from lalm.training import build
from lalm.training.exits import EXIT_CONFIG
from tests.unit.scripts import ROOT, run_script

# ---------------------------------------------------------------- the entry and its stand-ins


class ModelBuilt(Exception):
    """Raised by the stand-ins of init_distributed and build_model: the run got past validation."""


@pytest.fixture(scope="module")
def train_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lalm_train_script", ROOT / "scripts" / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What was reached of the steps that come after validation (init_distributed, build_model)."""
    calls: list[str] = []

    def stand_in(name: str) -> Callable[..., None]:
        def reached(*args: object, **kwargs: object) -> None:
            calls.append(name)
            raise ModelBuilt(name)

        return reached

    monkeypatch.setattr(build, "init_distributed", stand_in("init_distributed"))
    monkeypatch.setattr(build, "build_model", stand_in("build_model"))
    monkeypatch.delenv("LOCAL_RANK", raising=False)  # the error is printed at once on local rank 0
    return calls


# ---------------------------------------------------------------- manifests written for a case

Setup = Callable[[Path, Path], list[str]]  # writes files into tmp, returns the overrides that use them


def _records(corpus: Path, stage: str, keep: Callable[[dict], bool] = lambda r: True) -> list[dict]:
    """Corpus records (audio paths made absolute, so they can be written anywhere)."""
    records = read_manifest_records(corpus / stage / "train.jsonl", stage)
    return [{k: v for k, v in r.items() if k != "_source"} for r in records if keep(r)]


def _write(path: Path, lines: list[str | bytes]) -> Path:
    raw = [line if isinstance(line, bytes) else line.encode() for line in lines]
    path.write_bytes(b"".join(line + b"\n" for line in raw))
    return path


def _good(corpus: Path, n: int = 3) -> list[str]:
    return [json.dumps(r, ensure_ascii=False) for r in _records(corpus, "pretrain")[:n]]


def _manifest(lines: Callable[[Path, Path], list[str | bytes]], key: str = "train_manifest") -> Setup:
    name = "train.jsonl" if key == "train_manifest" else "dev.jsonl"

    def setup(corpus: Path, tmp: Path) -> list[str]:
        return [f"data.{key}={_write(tmp / name, lines(corpus, tmp))}"]

    return setup


def _records_manifest(stage: str, keep: Callable[[dict], bool]) -> Setup:
    return _manifest(lambda corpus, tmp: [json.dumps(r) for r in _records(corpus, stage, keep)])


def _without(record: dict, key: str) -> str:
    return json.dumps({k: v for k, v in record.items() if k != key})


# ---------------------------------------------------------------- the cases

BASE = {"data.dir": "{corpus}", "output_dir": "{tmp}/out", "trainer": "smoke", "model.vocab_size": "2000"}


@dataclass
class Mistake:
    id: str
    overrides: list[str]
    expected: list[str]  # fragments of the message; {corpus} and {tmp} are filled in
    setup: Setup | None = None  # writes files into tmp, returns more overrides
    hydra: bool = False  # a command-line mistake: also run scripts/train.py in a subprocess
    drop: list[str] = field(default_factory=list)  # keys of BASE to leave out

    def argv(self, corpus: Path, tmp: Path) -> list[str]:
        base = [f"{k}={v}" for k, v in BASE.items() if k not in self.drop]
        extra = self.setup(corpus, tmp) if self.setup else []
        return [_fill(a, corpus, tmp) for a in base + self.overrides] + extra

    def fragments(self, corpus: Path, tmp: Path) -> list[str]:
        return [_fill(f, corpus, tmp) for f in self.expected]


def _fill(text: str, corpus: Path, tmp: Path) -> str:
    # Not str.format: overrides hold braces of their own ({asr:3}).
    return text.replace("{corpus}", str(corpus)).replace("{tmp}", str(tmp))


MISTAKES = [
    # ---- the command line (Hydra)
    Mistake(
        "no-output-dir",
        [],
        ["Missing mandatory value: output_dir (add output_dir=DIR"],
        hydra=True,
        drop=["output_dir"],
    ),
    Mistake(
        "typo-in-key",
        ["trainer.max_stepz=3"],
        ["unknown key trainer.max_stepz (did you mean trainer.max_steps?); TrainerConfig has: max_steps,"],
        hydra=True,
    ),
    Mistake(
        "lr-scale-typo",
        ["optim.lr_scale.encodr=0.1"],
        ["unknown key optim.lr_scale.encodr (did you mean optim.lr_scale.encoder?)"],
        hydra=True,
    ),
    Mistake(
        "wrong-type",
        ["trainer.max_steps=abc"],
        ["trainer.max_steps=abc: Value 'abc' of type 'str' could not be converted to Integer"],
        hydra=True,
    ),
    Mistake(
        "unknown-stage-option",
        ["stage=banana"],
        ["no config stage/banana: stage= takes one of dpo, pretrain, sft"],
        hydra=True,
    ),
    Mistake(
        "unknown-experiment",  # an optional group: Hydra alone would silently ignore it
        ["experiment=synthetic_tiyn"],
        ["no config experiment/synthetic_tiyn (did you mean synthetic_tiny?)"],
        hydra=True,
    ),
    Mistake("override-syntax", ["stage"], ["cannot parse 'stage': missing EQUAL"], hydra=True),
    Mistake(
        "dict-key-without-plus",
        ["stage.task_weights={asr:3}"],
        ["To append to your config use +stage.task_weights={asr:3}"],
        hydra=True,
    ),
    Mistake(
        "missing-model-dir",
        ["model=from_components"],
        ["Missing mandatory value: model.whisper_dir"],
        hydra=True,
        drop=["model.vocab_size"],  # a tiny-model key: from_components does not have it
    ),
    # ---- keys the schema does not have, added with '+'
    Mistake(
        "plus-task-weight-typo",
        ["+stage.task_weight={asr:3}"],
        ["unknown key stage.task_weight (did you mean stage.task_weights?); PretrainStageConfig has:"],
    ),
    Mistake(
        "plus-trainer-typo",
        ["+trainer.max_step=5"],
        ["unknown key trainer.max_step (did you mean trainer.max_steps?)"],
    ),
    Mistake("plus-top-level", ["+foo=1"], ["unknown key foo; TrainConfig has: stage, model,"]),
    Mistake(
        "plus-nested-lora",
        ["+stage.lora.dropuot=0.1"],
        ["unknown key stage.lora.dropuot (did you mean stage.lora.dropout?)"],
    ),
    Mistake(
        "plus-sft-chat-weight",
        ["stage=sft", "+stage.chat_wieght=0.3"],
        ["unknown key stage.chat_wieght (did you mean stage.chat_weight?); SftStageConfig has:"],
    ),
    # ---- values that cannot work
    Mistake(
        "warmup-not-before-end",
        ["optim.warmup_steps=3"],
        ["optim.warmup_steps=3 must be < trainer.max_steps=3"],
    ),
    Mistake("negative-warmup", ["optim.warmup_steps=-1"], ["optim.warmup_steps must be >= 0, got -1"]),
    Mistake(
        "negative-grad-norm",
        ["optim.max_grad_norm=-1"],
        ["optim.max_grad_norm must be >= 0 (0: no clipping)"],
    ),
    Mistake("zero-lr", ["optim.lr=0"], ["optim.lr must be a finite number > 0, got 0.0"]),
    Mistake("nan-lr", ["optim.lr=nan"], ["optim.lr must be a finite number > 0, got nan"]),
    Mistake(
        "beta-of-one",
        ["optim.betas=[0.9,1.0]"],
        ["optim.betas must be two numbers in [0, 1), got [0.9, 1.0]"],
    ),
    Mistake("zero-eps", ["optim.eps=0"], ["optim.eps must be > 0, got 0.0"]),
    Mistake(
        "negative-weight-decay", ["optim.weight_decay=-0.1"], ["optim.weight_decay must be >= 0, got -0.1"]
    ),
    Mistake(
        "min-lr-ratio-above-one",
        ["optim.min_lr_ratio=1.5"],
        ["optim.min_lr_ratio must be in [0, 1], got 1.5"],
    ),
    Mistake("zero-max-length", ["data.max_length=0"], ["data.max_length must be > 0, got 0"]),
    Mistake(
        "negative-workers",
        ["data.num_workers=-2"],
        ["data.num_workers must be >= 0, or -1 for automatic, got -2"],
    ),
    Mistake(
        "negative-eval-batches", ["trainer.eval_batches=-1"], ["trainer.eval_batches must be >= 0 (0: all)"]
    ),
    Mistake(
        "lora-rank-zero", ["stage.lora.enabled=true", "stage.lora.r=0"], ["stage.lora.r must be >= 1, got 0"]
    ),
    Mistake(
        "lora-dropout-one",
        ["stage.lora.enabled=true", "stage.lora.dropout=1.0"],
        ["stage.lora.dropout must be in [0, 1), got 1.0"],
    ),
    Mistake(
        "resume-path-missing",
        ["resume={tmp}/nowhere"],
        ["resume='{tmp}/nowhere': use auto, never or the path of a checkpoint folder"],
    ),
    Mistake("keep-last-zero", ["trainer.keep_last=0"], ["trainer.keep_last must be >= 1, got 0"]),
    Mistake("nonfinite-policy", ["trainer.nonfinite=ignore"], ["trainer.nonfinite='ignore': skip|abort"]),
    Mistake(
        "max-skips-zero",
        ["trainer.max_consecutive_skips=0"],
        ["trainer.max_consecutive_skips must be >= 1, got 0"],
    ),
    Mistake(
        "collective-timeout-zero",
        ["trainer.collective_timeout_s=0"],
        ["trainer.collective_timeout_s must be a number of seconds > 0, got 0.0"],
    ),
    Mistake(
        "negative-step-timeout",
        ["trainer.step_timeout_s=-1"],
        ["trainer.step_timeout_s must be a number of seconds >= 0 (0: off), got -1.0"],
    ),
    Mistake(
        "bad-fraction-above-one", ["data.max_bad_fraction=1.5"], ["data.max_bad_fraction must be in [0, 1]"]
    ),
    Mistake(
        "negative-duration-tolerance",
        ["data.duration_tolerance_s=-0.1"],
        ["data.duration_tolerance_s must be a number of seconds >= 0, got -0.1"],
    ),
    Mistake("negative-ctc-weight", ["stage.ctc_weight=-1"], ["stage.ctc_weight must be >= 0, got -1.0"]),
    Mistake(
        "heads-do-not-divide",
        ["model.encoder_heads=5"],
        ["model.encoder_dim=192 must be a multiple of model.encoder_heads=5"],
    ),
    Mistake(
        "offload-without-zero",
        ["deepspeed=zero0", "deepspeed.offload_optimizer=true"],
        ["deepspeed.offload_optimizer=true needs ZeRO 1-3"],
    ),
    Mistake("dpo-without-init-from", ["stage=dpo"], ["stage=dpo needs init_from="]),
    Mistake(
        "robust-dpo-without-label-smoothing",
        ["stage=dpo", "stage.loss=robust"],
        ["stage=dpo needs init_from=", "stage.loss=robust needs stage.label_smoothing in (0, 0.5)"],
    ),
    Mistake(
        "lr-scale-0-for-a-trained-part",
        ["optim.lr_scale.encoder=0"],
        [
            "optim.lr_scale.encoder=0 trains the encoder at learning rate 0: to freeze it set stage.train_encoder=false"
        ],
    ),
    Mistake("negative-task-weight", ["+stage.task_weights={asr:-1}"], ["stage.task_weights must be >= 0"]),
    Mistake(
        "task-weights-unknown-task",
        ["+stage.task_weights={captoin:2}"],
        ["stage.task_weights names unknown tasks ['captoin'] (did you mean caption?)"],
    ),
    # ---- manifests
    Mistake(
        "malformed-json",
        [],
        ["{tmp}/train.jsonl:2: not valid JSON"],
        setup=_manifest(lambda c, t: [_good(c)[0], '{"id": "x", "audio": ', _good(c)[1]]),
    ),
    Mistake(
        "invalid-utf8",
        [],
        ["{tmp}/train.jsonl:2: not valid UTF-8"],
        setup=_manifest(lambda c, t: [_good(c)[0], b'{"id": "\xff\xfe"}']),
    ),
    Mistake(
        "missing-field",
        [],
        ["{tmp}/train.jsonl:3: missing field 'text'"],
        setup=_manifest(lambda c, t: [*_good(c, 2), _without(_records(c, "pretrain")[2], "text")]),
    ),
    Mistake(
        "manifest-of-another-stage",
        ["data.train_manifest={corpus}/sft/train.jsonl"],
        [
            "{corpus}/sft/train.jsonl:1: this looks like an sft manifest (has 'messages' and 'mode'); "
            "stage=pretrain needs task/audio/text records"
        ],
    ),
    Mistake(
        "several-bad-lines-all-listed",
        [],
        [
            "{tmp}/train.jsonl: 3 bad lines",
            "  {tmp}/train.jsonl:2: not valid JSON",
            "  {tmp}/train.jsonl:4: a line must hold a JSON object, got list",
            "  {tmp}/train.jsonl:5: missing field 'task'",
        ],
        setup=_manifest(
            lambda c, t: [
                _good(c)[0],
                "{oops",
                _good(c)[1],
                "[1, 2]",
                _without(_records(c, "pretrain")[0], "task"),
            ]
        ),
    ),
    Mistake(
        "missing-audio-file",
        [],
        ["{tmp}/train.jsonl:2: audio file not found: {tmp}/gone.wav"],
        setup=_manifest(
            lambda c, t: [_good(c)[0], json.dumps({**_records(c, "pretrain")[1], "audio": "gone.wav"})]
        ),
    ),
    Mistake(
        "empty-manifest",
        [],
        ["{tmp}/train.jsonl:0: manifest holds no examples"],
        setup=_manifest(lambda c, t: [""]),
    ),
    Mistake(
        "missing-manifest",
        ["data.train_manifest={tmp}/nope.jsonl"],
        ["data.train_manifest {tmp}/nope.jsonl does not exist"],
    ),
    Mistake(
        "bad-dev-manifest",
        [],
        ["{tmp}/dev.jsonl:1: not valid JSON"],
        setup=_manifest(lambda c, t: ["{"], key="dev_manifest"),
    ),
    # ---- the config against the data
    Mistake(
        "max-length-too-small",
        ["data.max_length=16"],
        [
            "data.max_length=16 is shorter than every example of {corpus}/pretrain/train.jsonl (the shortest needs at least"
        ],
    ),
    Mistake(
        "task-weights-task-not-in-manifest",
        ["+stage.task_weights={lid:3}"],
        ["stage.task_weights names 'lid', which {tmp}/train.jsonl does not have; its tasks are ['asr']"],
        setup=_records_manifest("pretrain", lambda r: r["task"] == "asr"),
    ),
    Mistake(
        "sft-task-weights-typo",
        ["stage=sft", "+stage.task_weights={lidd:3}"],
        [
            "stage.task_weights names 'lidd' (did you mean lid?), which analysis mode of {corpus}/sft/train.jsonl"
        ],
    ),
    Mistake(
        "sft-chat-weight-without-chat-examples",
        ["stage=sft", "stage.chat_weight=0.3"],
        ["stage.chat_weight=0.3 but {tmp}/train.jsonl has no chat-mode examples: set stage.chat_weight=0"],
        setup=_records_manifest("sft", lambda r: r["mode"] == "analysis"),
    ),
    Mistake(
        "sft-analysis-share-without-analysis-examples",
        ["stage=sft"],
        [
            "stage.chat_weight=0.5 leaves 0.5 of each batch to analysis mode, but {tmp}/train.jsonl has no analysis"
        ],
        setup=_records_manifest("sft", lambda r: r["mode"] == "chat"),
    ),
    Mistake(
        "clips-longer-than-max-audio-seconds",
        # clips over 2.51 s decode to over 2.4 s (duration_tolerance_s 0.1); one of 2.500062 s does not
        # (its bound floors to exactly 2.4 s of samples)
        ["data.max_audio_seconds=2.4"],
        ["every example of {tmp}/train.jsonl has a clip longer than data.max_audio_seconds=2.4: raise it"],
        setup=_records_manifest("pretrain", lambda r: r["audio"]["duration"] > 2.51),
    ),
    Mistake(
        "long-audio-overlap-as-long-as-the-window",
        ["model.window_seconds=2", "data.long_audio_overlap_s=2"],
        ["data.long_audio_overlap_s=2.0 is not shorter than the encoder's window (2 s)"],
    ),
]


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.id for m in MISTAKES])
def test_mistake_is_refused_before_any_model(
    mistake: Mistake,
    corpus_dir: Path,
    tmp_path: Path,
    train_script: ModuleType,
    built: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train_script.main(mistake.argv(corpus_dir, tmp_path))
    message = capsys.readouterr().err
    assert exit_info.value.code == EXIT_CONFIG, message
    assert built == []
    assert message.startswith("error: ")
    assert [f for f in mistake.fragments(corpus_dir, tmp_path) if f not in message] == [], message
    assert "Traceback" not in message
    assert not (tmp_path / "out").exists()


HYDRA_MISTAKES = [m for m in MISTAKES if m.hydra]


@pytest.mark.parametrize("mistake", HYDRA_MISTAKES, ids=[m.id for m in HYDRA_MISTAKES])
def test_command_line_mistake_in_a_real_process(mistake: Mistake, corpus_dir: Path, tmp_path: Path) -> None:
    env = {"DS_ACCELERATOR": "cpu", "PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "OMP_NUM_THREADS": "1"}
    result = run_script("train.py", *mistake.argv(corpus_dir, tmp_path), env=env)
    output = result.stdout + result.stderr
    assert result.returncode == EXIT_CONFIG, output
    assert [f for f in mistake.fragments(corpus_dir, tmp_path) if f not in result.stderr] == [], output
    assert "Traceback" not in output and "HYDRA_FULL_ERROR" not in output
    assert len(result.stderr.strip().splitlines()) == 2  # the title and the one line that matters
    assert not (tmp_path / "out").exists()


def test_there_are_at_least_thirty_distinct_mistakes() -> None:
    assert len({m.id for m in MISTAKES}) == len(MISTAKES) >= 30


# ---------------------------------------------------------------- the stand-ins are reachable


@pytest.mark.parametrize("stage", ["pretrain", "sft", "dpo"])
def test_a_valid_config_gets_past_validation(
    stage: str, corpus_dir: Path, tmp_path: Path, train_script: ModuleType, built: list[str]
) -> None:
    """The refusals above are not vacuous: the same entry with a valid config reaches the model."""
    extra = [f"stage={stage}"]
    if stage == "dpo":
        (tmp_path / "sft").mkdir()
        (tmp_path / "sft" / "config.json").write_text("{}")
        extra.append(f"init_from={tmp_path / 'sft'}")
    with pytest.raises(ModelBuilt):
        train_script.main(Mistake("valid", extra, []).argv(corpus_dir, tmp_path))
    assert built == ["init_distributed"]
