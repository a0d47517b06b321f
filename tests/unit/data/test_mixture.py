"""data.mixture: drawn shares match the weights, shares from sizes and temperature, the stream is a
pure function of (seed, position) that seeks and splits over ranks, and mistakes are refused (78)."""

from __future__ import annotations

import importlib.util
import json
import math
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from lalm.data.mixture import CountingCollator, Mixture, Source, default_name, source_shares
from lalm.data.sampling import EpochStream, MixtureStream, RankBatches, apportion
from lalm.training import build
from lalm.training.checkpoint import COMPLETE, STATE_FILE
from lalm.training.exits import EXIT_CONFIG
from lalm.training.run_folder import RunFolderError, mixture_fingerprint, plan_resume

ROOT = Path(__file__).resolve().parents[3]
SIZES = [5, 40, 300]  # three sources of very different sizes


def _mixture(weights: list[float | None], temperature: float = 1.0, sizes: list[int] = SIZES) -> Mixture:
    sources = [Source(f"s{i}", f"/m{i}.jsonl", w) for i, w in enumerate(weights)]
    return Mixture(sources, sizes, temperature)


def _sources_of(mixture: Mixture, stream: MixtureStream, positions: range) -> Counter:
    return Counter(mixture.source_index(stream[k]) for k in positions)


# ---------------------------------------------------------------- shares


def test_shares_by_hand():
    assert source_shares([1.0, 3.0], [100, 400], 1.0) == pytest.approx([0.25, 0.75])
    assert source_shares([None, None], [100, 400], 1.0) == pytest.approx([0.2, 0.8])  # by size
    assert source_shares([None, None], [100, 400], 2.0) == pytest.approx([10 / 30, 20 / 30])  # sqrt
    # T -> large flattens towards uniform: 100^(1/10) = 1.585, 400^(1/10) = 1.821.
    assert source_shares([None, None], [100, 400], 10.0) == pytest.approx([0.4653, 0.5347], abs=1e-4)


def test_apportion_is_within_one_of_each_share_and_sums_to_n():
    shares = [0.5, 0.3, 0.2 - 1e-9, 1e-9]
    for n in (0, 1, 7, 1000, 12345):
        counts = apportion(shares, n)
        assert sum(counts) == n
        assert all(abs(c - s * n) < 1 for c, s in zip(counts, shares, strict=True))


def test_default_names_come_from_the_recipe_folder(tmp_path):
    (tmp_path / "librispeech" / "pretrain").mkdir(parents=True)
    assert default_name(str(tmp_path / "librispeech/pretrain/train.jsonl"), "pretrain") == "librispeech"
    assert default_name(str(tmp_path / "librispeech"), "pretrain") == "librispeech"
    assert default_name(str(tmp_path / "extra.jsonl"), "pretrain") == "extra"


# ---------------------------------------------------------------- the stream


def test_drawn_proportions_match_the_weights():
    mixture = _mixture([0.2, 0.3, 0.5])
    stream = mixture.stream(EpochStream(sum(SIZES), 0), seed=1)
    n = 20 * stream.block
    counts = _sources_of(mixture, stream, range(n))
    # Dealt in blocks: at every block end each source is within one example of its share.
    assert [counts[s] for s in range(3)] == pytest.approx([0.2 * n, 0.3 * n, 0.5 * n], abs=1)
    # Any window (here one straddling two blocks) is a random sample: within 4 binomial sigmas.
    window = _sources_of(mixture, stream, range(5_500, 7_500))
    for s, share in enumerate([0.2, 0.3, 0.5]):
        sigma = math.sqrt(2_000 * share * (1 - share))
        assert abs(window[s] - 2_000 * share) < 4 * sigma, (s, window)


def test_shares_by_size_when_no_weights_are_given():
    mixture = _mixture([None, None, None], temperature=2.0)
    stream = mixture.stream(EpochStream(sum(SIZES), 0), seed=0)
    n = 10 * stream.block
    counts = _sources_of(mixture, stream, range(n))
    roots = [math.sqrt(size) for size in SIZES]
    expected = [n * r / sum(roots) for r in roots]
    assert [counts[s] for s in range(3)] == pytest.approx(expected, abs=1)


def test_each_source_is_read_in_shuffled_passes():
    """The first 5 draws of the 5-example source are a permutation of it, and so are the next 5."""
    mixture = _mixture([1.0, 1.0, 1.0])
    stream = mixture.stream(EpochStream(sum(SIZES), 0), seed=0)
    small = [stream[k] for k in range(400) if stream[k] < SIZES[0]]
    assert sorted(small[:5]) == sorted(small[5:10]) == list(range(5))
    assert small[:5] != small[5:10] or small[5:10] != small[10:15]  # passes are reshuffled
    big = [stream[k] for k in range(600) if stream[k] >= SIZES[0] + SIZES[1]]
    assert len(set(big)) == len(big)  # 200 draws of 300: no repeat within a pass


def test_the_stream_is_a_pure_function_of_seed_and_position():
    def read(seed: int, positions: range) -> list[int]:
        mixture = _mixture([0.2, 0.3, 0.5])
        stream = mixture.stream(EpochStream(sum(SIZES), seed), seed)
        return [stream[k] for k in positions]

    assert read(3, range(3000)) == read(3, range(3000))
    assert read(3, range(3000)) != read(4, range(3000))
    # Seek: a fresh stream read from position 4,000 (a later block, a later pass) gives what reading
    # from 0 gives there.
    whole = read(5, range(6000))
    assert read(5, range(4000, 6000)) == whole[4000:]
    # Reading backwards (another block cached in between) changes nothing either.
    mixture = _mixture([0.2, 0.3, 0.5])
    stream = mixture.stream(EpochStream(sum(SIZES), 5), 5)
    assert [stream[k] for k in reversed(range(6000))] == whole[::-1]


def test_two_ranks_read_disjoint_slices_whose_union_is_one_ranks_stream():
    mixture = _mixture([0.2, 0.3, 0.5])
    stream = mixture.stream(EpochStream(sum(SIZES), 0), 0)
    steps, global_batch = 6, 8

    def positions(rank: int, world: int) -> list[list[int]]:
        batches = RankBatches(stream, global_batch // world, 1, rank, world, start_step=2, num_steps=steps)
        return list(batches)

    one = positions(0, 1)
    ranks = [positions(r, 2) for r in range(2)]
    for step in range(steps):
        assert ranks[0][step] + ranks[1][step] == one[step]
    assert one == [[stream[k] for k in range(s * 8, s * 8 + 8)] for s in range(2, 2 + steps)]


def test_the_stages_own_weights_apply_within_a_source():
    """Task weights {a: 3}: within each source an `a` example is drawn 3x as often as a `b` one,
    while the source shares stay the mixture's."""
    tasks = ["a"] * 10 + ["b"] * 10 + ["a"] * 20 + ["b"] * 60  # source 0: 20 examples, source 1: 80
    groups = [[i for i, t in enumerate(tasks) if t == name] for name in ("a", "b")]
    stage_stream = MixtureStream(groups, [3 * 30, 70], seed=0)  # weight x size, as task_groups does
    mixture = _mixture([1.0, 1.0], sizes=[20, 80])
    stream = mixture.stream(stage_stream, seed=0)
    n = 8 * stream.block
    drawn = Counter((mixture.source_index(stream[k]), tasks[stream[k]]) for k in range(n))
    assert drawn[(0, "a")] + drawn[(0, "b")] == pytest.approx(n / 2, abs=1)
    # Source 0: a:b = 3x10 : 10 -> 3/4 of its draws; source 1: 3x20 : 60 -> 1/2.
    assert drawn[(0, "a")] == pytest.approx(n / 2 * 0.75, abs=1)
    assert drawn[(1, "a")] == pytest.approx(n / 2 * 0.5, abs=1)


def test_counting_collator_counts_examples_per_source():
    collator = CountingCollator(lambda examples: {"ids": [e["id"] for e in examples]}, {"/a.jsonl": "a"})
    batch = collator([{"id": "1", "source": "/a.jsonl:3"}, {"id": "2", "source": "/a.jsonl:9"}, {"id": "3"}])
    assert batch == {"ids": ["1", "2", "3"], "mix": {"a": 2}}


# ---------------------------------------------------------------- resume fingerprint


def test_a_source_that_changed_size_refuses_the_resume(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("1\n2\n")
    b.write_text("3\n4\n")
    saved = mixture_fingerprint([("a", a, 2), ("b", b, 2)])
    checkpoint = tmp_path / "run" / "checkpoints" / "step-0000002"
    checkpoint.mkdir(parents=True)
    state = {"config": {}, "train_state": {"step": 2}, "data_fingerprint": saved}
    (checkpoint / STATE_FILE).write_text(json.dumps(state))
    (checkpoint / COMPLETE).write_text("{}")
    assert plan_resume(tmp_path / "run", "auto", {}, saved).checkpoint == str(checkpoint)
    # The same total, split otherwise: every position would draw other examples.
    with pytest.raises(RunFolderError, match=r"sources changed size .*a: 2 -> 1, b: 2 -> 3"):
        plan_resume(tmp_path / "run", "auto", {}, mixture_fingerprint([("a", a, 1), ("b", b, 3)]))
    assert saved["train_sha256"] != mixture_fingerprint([("a", b, 2), ("b", a, 2)])["train_sha256"]


# ---------------------------------------------------------------- mistakes (exit 78, nothing built)


class ModelBuilt(Exception):
    pass


@pytest.fixture
def train_main(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - scripts/train.py's main
    spec = importlib.util.spec_from_file_location("lalm_train_script_mix", ROOT / "scripts" / "train.py")
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def reached(*args: object, **kwargs: object) -> None:
        raise ModelBuilt

    monkeypatch.setattr(build, "init_distributed", reached)
    monkeypatch.setattr(build, "build_model", reached)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    return module.main


def _argv(corpus: Path, tmp: Path, mixture: str, *extra: str) -> list[str]:
    return [
        f"data.dir={corpus}",
        f"output_dir={tmp}/out",
        "trainer=smoke",
        "model.vocab_size=2000",
        f"data.mixture.sources={mixture}",
        *extra,
    ]


MISTAKES = [
    ("empty", "[]", [], ["data.mixture.sources is empty"]),
    (
        "weight-zero",
        "[{path:'{corpus}/pretrain/train.jsonl',weight:0},{path:'{corpus}',name:b,weight:1}]",
        [],
        ["data.mixture source '{name}': weight must be > 0, got 0.0"],
    ),
    (
        "unknown-path",
        "[{path:'{tmp}/nope/pretrain/train.jsonl'}]",
        [],
        ["data.mixture source 'nope': {tmp}/nope/pretrain/train.jsonl does not exist"],
    ),
    (
        "some-weights",
        "[{path:'{corpus}',weight:2},{path:'{corpus}/pretrain/train.jsonl',name:b}]",
        [],
        ["data.mixture: 1 of 2 sources have a weight: give every source one, or none"],
    ),
    (
        "same-names",
        "[{path:'{corpus}'},{path:'{corpus}/pretrain/train.jsonl'}]",
        [],
        ["data.mixture: sources named alike ['{name}']"],
    ),
    (
        "temperature",
        "[{path:'{corpus}'}]",
        ["data.mixture.temperature=0"],
        ["data.mixture.temperature must be > 0, got 0.0"],
    ),
    (
        "train-manifest-too",
        "[{path:'{corpus}'}]",
        ["data.train_manifest={corpus}/pretrain/train.jsonl"],
        ["data.train_manifest and data.mixture are both set"],
    ),
    (
        "wrong-stage",
        "[{path:'{corpus}'},{path:'{corpus}/sft/train.jsonl',name:chat}]",
        [],
        ["{corpus}/sft/train.jsonl:1: this looks like an sft manifest", "stage=pretrain needs"],
    ),
]


@pytest.mark.parametrize(("case", "mixture", "extra", "expected"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_a_mixture_mistake_is_refused_before_any_model(
    case, mixture, extra, expected, corpus_dir, tmp_path, train_main, capsys
):
    def fill(text: str) -> str:
        text = text.replace("{corpus}", str(corpus_dir)).replace("{tmp}", str(tmp_path))
        return text.replace("{name}", corpus_dir.name)  # a source's default name: its folder

    with pytest.raises(SystemExit) as exit_info:
        train_main(_argv(corpus_dir, tmp_path, fill(mixture), *map(fill, extra)))
    message = capsys.readouterr().err
    assert exit_info.value.code == EXIT_CONFIG, message
    assert message.startswith("error: ") and "Traceback" not in message
    assert [f for f in map(fill, expected) if f not in message] == [], message
    assert not (tmp_path / "out").exists()


def test_a_valid_mixture_gets_past_validation(corpus_dir, tmp_path, train_main):
    mixture = (
        f"[{{path:'{corpus_dir}',weight:1}},{{path:'{corpus_dir}/pretrain/train.jsonl',name:b,weight:3}}]"
    )
    with pytest.raises(ModelBuilt):
        train_main(_argv(corpus_dir, tmp_path, mixture))
