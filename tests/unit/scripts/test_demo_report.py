"""The demo report's table and target checks, on made-up metrics."""

from __future__ import annotations

from scripts.demo_report import metric_table, pair_table, targets, unseen_table, write_report

METRICS = {
    "init": {"asr/en/wer": 1.0, "lid/accuracy": 0.1},
    "pretrain": {"asr/en/wer": 0.25, "asr/zh/cer": 0.4},
    "sft": {"asr/en/wer": 0.2, "lid/accuracy": 0.85, "preference/accuracy": 0.0, "preference/margin": 0.0},
    "dpo": {"asr/en/wer": 0.27, "lid/accuracy": 0.8, "preference/accuracy": 0.95, "preference/margin": 0.4},
    "pretrain-unseen": {"asr/en/wer": 0.11, "lid/accuracy": 0.7},
    "sft-unseen": {"asr/en/wer": 0.3},
}


def test_table_has_a_row_per_model_and_marks_missing_values():
    table = metric_table(METRICS).splitlines()
    assert table[2].startswith("| random init | 100.0% | n/a | 10.0% |")
    assert table[5] == "| dpo | 27.0% | n/a | 80.0% | n/a | 0.95 | +0.400 |"


def test_pair_table_lists_the_pair_types_the_evaluation_reported():
    metrics = {
        **METRICS,
        "pretrain": {"preference/lid/accuracy": 0.5},
        "dpo": {"preference/lid/accuracy": 0.9667, "preference/lid/n": 60, "preference/asr/accuracy": 0.7},
    }
    lines = pair_table(metrics).splitlines()
    assert lines[2] == "| asr: transcript vs one word swapped | 0 | n/a | 0.70 |"
    assert lines[3] == "| lid: language label vs a wrong one | 60 | 0.50 | 0.97 |"
    assert len(lines) == 4  # no chat pairs were reported


def test_targets_report_measured_values_and_misses():
    checks = targets(METRICS)
    # Unseen voices 11% < 12%; SFT gained WER points (20% vs 25%); DPO lost 7 WER points.
    assert [ok for _, _, ok in checks] == [True, True, True, True, True, False]
    assert checks[0][1] == "11.0% (test split, seen voices: 25.0%)"
    assert checks[5][1] == "27.0% vs 20.0%"
    worse = {**METRICS, "sft": {**METRICS["sft"], "asr/en/wer": 0.265}}
    assert targets(worse)[1] == ("SFT within 1 English WER point of pretraining", "26.5% vs 25.0%", False)


def test_unseen_table_sets_each_model_beside_its_test_numbers():
    lines = unseen_table(METRICS).splitlines()
    assert lines[2] == "| pretrain | 25.0% | 11.0% | n/a | 70.0% |"
    assert lines[3] == "| sft | 20.0% | 30.0% | 85.0% | n/a |"
    assert lines[4] == "| dpo | 27.0% | n/a | 80.0% | n/a |"


def test_report_is_written_without_plots_when_there_are_no_runs(tmp_path):
    write_report(tmp_path, METRICS, ["python scripts/train.py stage=sft"], {"sft": 12.0}, 60.0)
    text = (tmp_path / "REPORT.md").read_text()
    assert "| DPO loses at most 5 WER points against SFT | 27.0% vs 20.0% | **no** |" in text
    assert "python scripts/train.py stage=sft" in text
