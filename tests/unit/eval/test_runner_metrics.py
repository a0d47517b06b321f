"""preference_metrics: overall and per-task preference numbers from the rows of every DPO manifest."""

from __future__ import annotations

import pytest

from lalm.eval.runner import preference_metrics


def _row(manifest: str, task: str | None, logps: tuple[float, float], rewards: tuple[float, float]) -> dict:
    return {
        "id": f"{manifest}-{task}-{logps}",
        "manifest": manifest,
        "task": task,
        "logps/chosen": logps[0],
        "logps/rejected": logps[1],
        "rewards/chosen": rewards[0],
        "rewards/rejected": rewards[1],
    }


def test_pairs_of_two_manifests_are_counted_together_and_per_task() -> None:
    rows = [
        _row("a.jsonl", "asr", (-1.0, -2.0), (0.3, 0.1)),  # right by logp and by reward, margin 0.2
        _row("a.jsonl", "lid", (-3.0, -2.0), (0.0, 0.0)),  # wrong by logp, a reward tie counts as wrong
        _row("b.jsonl", "asr", (-1.0, -5.0), (-0.1, 0.3)),  # right by logp, wrong by reward, margin -0.4
        _row("b.jsonl", None, (-1.0, -0.5), (0.5, -0.5)),  # no task: overall only, margin 1.0
    ]
    metrics = preference_metrics(rows)
    assert metrics["preference/n"] == 4
    assert metrics["preference/logp_accuracy"] == pytest.approx(2 / 4)
    assert metrics["preference/accuracy"] == pytest.approx(2 / 4)
    assert metrics["preference/margin"] == pytest.approx((0.2 + 0.0 - 0.4 + 1.0) / 4)
    assert metrics["preference/asr/n"] == 2 and metrics["preference/asr/accuracy"] == pytest.approx(0.5)
    assert metrics["preference/asr/margin"] == pytest.approx((0.2 - 0.4) / 2)
    assert metrics["preference/lid/n"] == 1 and metrics["preference/lid/accuracy"] == 0.0
    assert not any(key.startswith("preference/None") for key in metrics)


def test_without_a_reference_only_log_prob_accuracy() -> None:
    rows = [{k: v for k, v in _row("a", "asr", (-1.0, -2.0), (0, 0)).items() if "rewards" not in k}]
    metrics = preference_metrics(rows)
    assert metrics == {
        "preference/logp_accuracy": 1.0,
        "preference/n": 1,
        "preference/asr/logp_accuracy": 1.0,
        "preference/asr/n": 1,
    }


def test_a_record_with_several_references_reaches_scoring_with_all_of_them() -> None:
    """Clotho's eval records list five captions: predictions.jsonl items carry them, and BLEU is then
    scored against every one (a prediction equal to the third caption is a perfect score)."""
    from lalm.eval.runner import _meta
    from lalm.eval.scoring import score_generations

    base = {"task": "caption", "language": None, "target_language": None, "prompt_language": "en"}
    captions = ["a dog barks twice", "rain falls on a tin roof", "birds sing in the early morning"]
    several = _meta({**base, "text": captions[0], "references": captions}, "pretrain")
    one = _meta({**base, "text": captions[0], "references": None}, "pretrain")
    assert several["references"] == captions and "references" not in one
    items = [{**several, "prediction": captions[2]}]
    assert score_generations(items)["caption/en/bleu"] == pytest.approx(100.0)
    assert score_generations([{**one, "prediction": captions[2]}])["caption/en/bleu"] < 10
