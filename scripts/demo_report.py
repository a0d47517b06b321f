"""REPORT.md and plots for `make demo` (scripts/demo.py): the metric table per stage, the targets with
their measured values, training curves, and the commands that produced them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COLUMNS = (
    ("English WER", "asr/en/wer", "{:.1%}"),
    ("Mandarin CER", "asr/zh/cer", "{:.1%}"),
    ("language ID acc.", "lid/accuracy", "{:.1%}"),
    ("speaker gender acc.", "gender/accuracy", "{:.1%}"),
    ("preference acc.", "preference/accuracy", "{:.2f}"),
    ("reward margin", "preference/margin", "{:+.3f}"),
)
ROWS = {"init": "random init", "pretrain": "pretrain", "sft": "sft", "dpo": "dpo"}


def _cell(metrics: dict[str, float], key: str, fmt: str) -> str:
    return fmt.format(metrics[key]) if key in metrics else "n/a"


def metric_table(metrics: dict[str, dict[str, float]]) -> str:
    header = "| model | " + " | ".join(name for name, _, _ in COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 1)]
    for row, label in ROWS.items():
        cells = [_cell(metrics[row], key, fmt) for _, key, fmt in COLUMNS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


PAIR_TASKS = {
    "asr": "transcript vs one word swapped",
    "lid": "language label vs a wrong one",
    "chat": "answer in the asker's language vs in another",
}


def pair_table(metrics: dict[str, dict[str, float]]) -> str:
    """Held-out preference accuracy per pair type, for the models whose rewards are not all zero."""
    lines = [
        "| pair type | pairs | " + " | ".join(ROWS[r] for r in ("pretrain", "dpo")) + " |",
        "|---|---|---|---|",
    ]
    for task, meaning in PAIR_TASKS.items():
        key = f"preference/{task}/accuracy"
        if key not in metrics["dpo"]:
            continue
        count = int(metrics["dpo"].get(f"preference/{task}/n", 0))
        cells = [_cell(metrics[row], key, "{:.2f}") for row in ("pretrain", "dpo")]
        lines.append(f"| {task}: {meaning} | {count} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def unseen_table(metrics: dict[str, dict[str, float]]) -> str:
    """English WER and language ID on the test split against the same sentences in unseen voices."""
    lines = [
        "| model | English WER (test) | English WER (unseen voices) | language ID (test) | language ID (unseen voices) |",
        "|---|---|---|---|---|",
    ]
    for row in ("pretrain", "sft", "dpo"):
        unseen = metrics.get(f"{row}-unseen", {})
        cells = [
            _cell(metrics[row], "asr/en/wer", "{:.1%}"),
            _cell(unseen, "asr/en/wer", "{:.1%}"),
            _cell(metrics[row], "lid/accuracy", "{:.1%}"),
            _cell(unseen, "lid/accuracy", "{:.1%}"),
        ]
        lines.append(f"| {ROWS[row]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(metrics: dict[str, dict[str, float]]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for each promise of the demo."""
    get = lambda row, key: metrics[row].get(key, float("nan"))  # noqa: E731
    wer_pre, wer_init = get("pretrain", "asr/en/wer"), get("init", "asr/en/wer")
    lid, acc, margin = (
        get("sft", "lid/accuracy"),
        get("dpo", "preference/accuracy"),
        get("dpo", "preference/margin"),
    )
    wer_sft, wer_dpo = get("sft", "asr/en/wer"), get("dpo", "asr/en/wer")
    unseen = metrics.get("pretrain-unseen", {}).get("asr/en/wer", float("nan"))
    return [
        (
            "English WER < 12% on unseen voices after pretraining",
            f"{unseen:.1%} (test split, seen voices: {wer_pre:.1%})",
            unseen < 0.12,
        ),
        (
            "SFT within 1 English WER point of pretraining",
            f"{wer_sft:.1%} vs {wer_pre:.1%}",
            wer_sft - wer_pre <= 0.01,
        ),
        (
            "English WER < 30% after pretraining (random init near 100%)",
            f"{wer_pre:.1%} (random init {wer_init:.1%})",
            wer_pre < 0.30,
        ),
        ("language ID accuracy >= 80% after SFT", f"{lid:.1%}", lid >= 0.80),
        (
            "held-out DPO preference accuracy > 0.9 with a positive mean margin",
            f"{acc:.2f}, margin {margin:+.3f}",
            acc > 0.9 and margin > 0,
        ),
        (
            "DPO loses at most 5 WER points against SFT",
            f"{wer_dpo:.1%} vs {wer_sft:.1%}",
            wer_dpo - wer_sft <= 0.05,
        ),
    ]


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def plot_curves(out: Path) -> list[str]:
    """PNG plots of the training loss per stage and DPO rewards/margins and rewards/accuracies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    train: dict[str, list[dict[str, Any]]] = {}
    for stage in ("pretrain", "sft", "dpo"):
        logged = _records(out / "runs" / stage / "metrics.jsonl")
        records = train[stage] = [r for r in logged if "lr" in r]
        evals = [r for r in logged if "eval/loss" in r]
        if not records:
            continue
        figure, axis = plt.subplots(figsize=(6, 3.5))
        axis.plot([r["step"] for r in records], [r["loss"] for r in records], label="train loss")
        axis.plot([r["step"] for r in evals], [r["eval/loss"] for r in evals], "o-", label="dev loss")
        axis.set(xlabel="optimizer step", ylabel="loss", title=f"{stage}: loss")
        axis.legend()
        figure.tight_layout()
        figure.savefig(out / f"{stage}_loss.png", dpi=100)
        plt.close(figure)
        names.append(f"{stage}_loss.png")
    dpo = train["dpo"]
    if dpo:
        figure, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        for axis, key in zip(axes, ("rewards/margins", "rewards/accuracies"), strict=True):
            axis.plot([r["step"] for r in dpo], [r[key] for r in dpo])
            axis.set(xlabel="optimizer step", title=f"dpo: {key}")
        figure.tight_layout()
        figure.savefig(out / "dpo_rewards.png", dpi=100)
        plt.close(figure)
        names.append("dpo_rewards.png")
    return names


def write_report(
    out: Path,
    metrics: dict[str, dict[str, float]],
    commands: list[str],
    seconds: dict[str, float],
    total: float,
    quick: bool = False,
    pair_note: str = "",
) -> None:
    plots = plot_curves(out)
    checks = "\n".join(f"| {t} | {m} | {'yes' if ok else '**no**'} |" for t, m, ok in targets(metrics))
    timing = ", ".join(f"{name} {s:.0f} s" for name, s in seconds.items())
    text = f"""# lalm demo report

{"**Quick run (`--quick`): a pipeline check with a handful of steps; the numbers mean nothing.**" if quick else ""}

Synthetic corpus (espeak-ng speech in 8 languages and 30 voice variants, sox sounds) -> pretrain ->
SFT -> DPO with the tiny Qwen2-Audio model on CPU (torchrun, 2 ranks, DeepSpeed ZeRO-2), each evaluated
on the held-out test split (sentences never seen in training). Preference columns use the SFT model as the DPO reference.
Total time: {total / 60:.1f} min ({timing}).

## Metrics on the test split

{metric_table(metrics)}

The same test sentences spoken by espeak-ng voices no training clip uses (`pretrain/test_unseen_voices.jsonl`):

{unseen_table(metrics)}

Preference accuracy by pair type (the reward is beta * log(pi / pi_sft), so the SFT row is all ties):

{pair_table(metrics)}
{pair_note}
## Targets

| target | measured | met |
|---|---|---|
{checks}

## Training curves

{chr(10).join(f"![{name}]({name})" for name in plots)}

## Commands (run from the repository root; DS_ACCELERATOR=cpu on CPU machines)

```bash
{chr(10).join(commands)}
```

Full metrics per model: `eval/<model>/metrics.json`, predictions: `eval/<model>/predictions.jsonl`,
per-pair rewards: `eval/<model>/preferences.jsonl`, training logs: `runs/<stage>/metrics.jsonl`.
"""
    (out / "REPORT.md").write_text(text)
