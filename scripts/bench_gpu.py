"""Issue 10's GPU benchmark in one command: lalm's real trainer vs TRL's DPOTrainer, SFT MFU, and the
Qwen2-Audio-7B shape under memory-saving combinations; one table (JSON + markdown) in under 8 minutes.

    python scripts/bench_gpu.py --corpus .gpu_corpus                 # on one H100/H200 (docs/gpu-run.md)
    python scripts/bench_gpu.py --corpus DIR --smoke                 # CPU, tiny shapes, the same code path

Sections, in this order (a later job is skipped once the time budget is spent, and says so):
  - sft: model=qwen2_audio_1p5b_shape, encoder trained, through scripts/train.py under torchrun (one
    process): tokens/s, MFU by lalm.training.flops (encoder + LLM FLOPs, PERF.md), peak memory,
    data-wait fraction, packing efficiency, from the run's metrics.jsonl. Its final/ is DPO's init_from.
  - dpo: DPO from that model, frozen encoder, cached reference (stage.cache_reference=always), on two
    workloads: the corpus's short rows, and long rows of 10-30 s audio (250-750 audio positions) plus
    50-300 text tokens, made from the short clips (scripts/bench_gpu_data.py). After each, TRL's
    DPOTrainer (scripts/bench_dpo.py's TRL side, alone) on the same LLM shape, with as many pairs per
    step and LLM positions per row (prompt + completion, audio positions counted) as lalm's rows have
    on average; ratio_vs_trl = lalm tokens/s / TRL tokens/s; peak_over_trl_mb = lalm peak - TRL peak.
  - 7b: model=qwen2_audio_7b_shape, 5 SFT then 5 DPO steps per combination (--combos; each its own
    process, so an OOM there is a row, not the end). DPO starts from the first SFT combination that
    exported a final/.
Each lalm job runs fresh in <output-dir>/runs/<job>/; its log is beside it. Jobs that nothing starts
from are stopped after their last step's record: the export of final/ is not measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

try:  # imported as scripts.bench_gpu (the tests)
    from . import bench_gpu_data, bench_gpu_jobs, bench_gpu_trl
except ImportError:  # run as scripts/bench_gpu.py: its folder is sys.path[0]
    import bench_gpu_data  # type: ignore[no-redef]
    import bench_gpu_jobs  # type: ignore[no-redef]
    import bench_gpu_trl  # type: ignore[no-redef]

Job = bench_gpu_jobs.Job
COLUMNS = (
    "tokens_per_s",
    "wall_tokens_per_s",
    "mfu",
    "model_tflops_per_s",
    "peak_mb",
    "data_wait_fraction",
    "packing_efficiency",
    "ratio_vs_trl",
    "peak_over_trl_mb",
)
# 7B combinations (issue 10): name -> overrides for SFT and DPO alike. zero.Init applies where a
# checkpoint is loaded (DPO's init_from); the SFT model is built from random weights on the GPU.
COMBOS = {
    "z3-init-ac-lora": [
        "deepspeed=zero3",
        "deepspeed.zero_init=true",
        "trainer.activation_checkpointing=full",
        "stage.lora.enabled=true",
        "stage.lora.r=16",
        "stage.train_encoder=false",
        "stage.train_projector=false",
    ],
    "z3-offload-ac": ["deepspeed=zero3_offload", "trainer.activation_checkpointing=full"],
    "z3-ac": ["deepspeed=zero3", "deepspeed.zero_init=true", "trainer.activation_checkpointing=full"],
}


@dataclass
class Plan:
    """The sizes of one mode: the real shapes on a GPU, or tiny ones on CPU (--smoke)."""

    cpu: bool
    small: list[str]  # model overrides of the 1.5B-shape role
    big: list[str]  # ... and of the 7B-shape role
    batches: dict[str, tuple[int, int, int]]  # job kind -> (micro batch, global batch, steps)
    warmup: int  # steps left out of the medians
    long_rows: dict[str, int]
    long_seconds: tuple[float, float]
    combos: list[str]
    caps_s: dict[str, float]  # lalm job kind -> its own time limit (TRL's side runs to its end)
    budget_s: float
    extra: list[str] = field(default_factory=list)


GPU = Plan(
    cpu=False,
    small=["model=qwen2_audio_1p5b_shape"],
    big=["model=qwen2_audio_7b_shape"],
    batches={
        "sft": (32, 64, 12),
        "dpo": (32, 32, 12),
        "dpo-long": (8, 8, 10),
        "7b-sft": (4, 8, 5),
        "7b-dpo": (4, 4, 5),
    },
    warmup=2,
    long_rows={"train": 96, "dev": 8},
    long_seconds=bench_gpu_data.LONG_SECONDS,
    combos=["z3-init-ac-lora", "z3-offload-ac", "z3-ac"],
    caps_s={"sft": 110, "dpo": 75, "7b-sft": 120, "7b-dpo": 100},
    budget_s=450,
)
# Tiny shapes, 3 steps, a window of 6 s (the tiny model's): every code path of GPU, in about a minute.
TINY = ["model=tiny", "model.vocab_size=2000"]
SMOKE = Plan(
    cpu=True,
    small=TINY,
    big=[*TINY, "model.llm_layers=2"],
    batches={
        "sft": (2, 4, 3),
        "dpo": (2, 2, 3),
        "dpo-long": (2, 2, 3),
        "7b-sft": (2, 2, 3),
        "7b-dpo": (2, 2, 3),
    },
    warmup=1,
    long_rows={"train": 6, "dev": 2},
    long_seconds=(3.0, 5.5),
    combos=["z3-init-ac-lora"],
    caps_s={"sft": 120, "dpo": 120, "7b-sft": 120, "7b-dpo": 120},
    budget_s=600,
    extra=["data.num_workers=0"],
)


def _common(plan: Plan, kind: str, corpus: Path) -> list[str]:
    micro, batch, steps = plan.batches[kind]
    return [
        f"data.dir={corpus}",
        f"trainer.micro_batch_size={micro}",
        f"trainer.global_batch_size={batch}",
        f"trainer.max_steps={steps}",
        "trainer.eval_every=0",
        "trainer.save_every=0",
        "trainer.progress_bar=false",
        "trainer.wandb.mode=disabled",
        "optim.warmup_steps=0",
        *plan.extra,
    ]


def build_jobs(plan: Plan, corpus: Path, long_corpus: Path) -> list[Job]:
    """Every lalm job, in running order (TRL runs after each DPO job, in main)."""
    cached = "stage.cache_reference=always"

    def job(name: str, section: str, kind: str, data: Path, overrides: list[str], **more: Any) -> Job:
        micro, batch, steps = plan.batches[kind]
        cap, stage = plan.caps_s[kind.replace("-long", "")], "sft" if kind.endswith("sft") else "dpo"
        common = _common(plan, kind, data)
        return Job(name, section, stage, [*common, *overrides], steps, cap, rows_per_step=batch, **more)

    jobs = [
        job("sft-1.5b", "sft", "sft", corpus, plan.small, keep_final=True),
        job(
            "dpo-1.5b-short",
            "dpo",
            "dpo",
            corpus,
            [cached],
            init_from="sft-1.5b",
            labels={"workload": "short"},
        ),
        job(
            "dpo-1.5b-long",
            "dpo",
            "dpo-long",
            long_corpus,
            [cached],
            init_from="sft-1.5b",
            labels={"workload": "long"},
        ),
    ]
    for c in plan.combos:  # SFT then DPO per combination: the cheapest (LoRA) first
        labels = {"combination": c}
        jobs.append(job(f"sft-7b-{c}", "7b", "7b-sft", corpus, [*plan.big, *COMBOS[c]], labels=labels))
        jobs.append(
            job(f"dpo-7b-{c}", "7b", "7b-dpo", corpus, [*COMBOS[c], cached], init_from="7b", labels=labels)
        )
    return jobs


def _init_dir(job: Job, finals: dict[str, Path]) -> Path | None:
    """Where `job` starts from: its SFT job's final/, or for 7B DPO the first 7B SFT job's."""
    if job.init_from == "7b":
        return next((path for name, path in finals.items() if name.startswith("sft-7b")), None)
    return finals.get(job.init_from) if job.init_from else None


def run_lalm(job: Job, plan: Plan, out: Path, deadline: float, finals: dict[str, Path]) -> dict[str, Any]:
    """One lalm job's table row (status, medians of its records, its init), recording its final/."""
    row: dict[str, Any] = {
        "name": job.name,
        "section": job.section,
        "side": "lalm",
        "stage": job.stage,
        **job.labels,
    }
    overrides = list(job.overrides)
    if job.init_from:
        init = _init_dir(job, finals)
        if init is None:
            return row | {"status": f"skipped (no final/ of {job.init_from} to start from)"}
        overrides.append(f"init_from={init}")
        row["init_from"] = str(init)
    if time.monotonic() > deadline:
        return row | {"status": "skipped (time budget)"}
    if job.section == "7b" and job.stage == "sft" and not any(n.startswith("sft-7b") for n in finals):
        job = replace(job, keep_final=True)  # the 7B DPO runs start from the first 7B export
    print(f"[bench_gpu] {job.name}: {' '.join(overrides)}", flush=True)
    result = bench_gpu_jobs.run_job(job, overrides, out / "runs", deadline, plan.cpu)
    records = result.pop("records")
    final = out / "runs" / job.name / job.stage / "final"
    if job.keep_final and result["status"] == "ok" and (final / "config.json").is_file():
        finals[job.name] = final
    row |= result | bench_gpu_jobs.summarize(records, plan.warmup)
    return row


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "—"
    if key in ("mfu", "data_wait_fraction", "packing_efficiency"):
        return f"{value:.1%}"
    if key in ("ratio_vs_trl", "model_tflops_per_s"):
        return f"{value:.2f}"
    return f"{value:,.0f}" if isinstance(value, (int, float)) else str(value)


def markdown(table: dict[str, Any]) -> str:
    """The table as markdown: one line per job, its status, and the measured columns."""
    names = ("job", "status", "rows/step", *COLUMNS)
    lines = [
        f"{table['machine']}, {table['date']}: {table['mode']} mode, {table['seconds']:.0f} s in all",
        "",
    ]
    lines += ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in table["rows"]:
        cells = [row["name"], row["status"], _cell("rows", row.get("rows_per_step"))]
        cells += [_cell(key, row.get(key)) for key in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _machine(cpu: bool) -> str:
    import torch

    gpu = "" if cpu or not torch.cuda.is_available() else f"{torch.cuda.get_device_name(0)}, "
    return f"{gpu}{platform.machine()} {platform.system()}, torch {torch.__version__}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--corpus", required=True, help="a corpus from scripts/prepare_data.py (size 0.05 will do)"
    )
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny shapes, 3 steps: the same code path")
    parser.add_argument(
        "--output-dir", default="outputs/bench", help="bench_gpu.json / .md and runs/ go here"
    )
    parser.add_argument("--budget-s", type=float, help="stop starting jobs after this (default: 450 on GPU)")
    parser.add_argument("--combos", help=f"comma-separated 7B combinations of {sorted(COMBOS)} ('' for none)")
    args = parser.parse_args(argv)
    corpus = Path(args.corpus)
    missing = [
        str(corpus / s / "train.jsonl") for s in ("sft", "dpo") if not (corpus / s / "train.jsonl").is_file()
    ]
    if missing:
        parser.error(
            f"--corpus {corpus}: no {', '.join(missing)} (make one: scripts/prepare_data.py recipe=synthetic)"
        )
    if args.combos is not None and set(c for c in args.combos.split(",") if c) - set(COMBOS):
        parser.error(f"--combos {args.combos!r}: choose from {sorted(COMBOS)}")
    if not args.smoke:
        import torch

        if not torch.cuda.is_available():
            parser.error("torch sees no CUDA GPU: run on a GPU machine (docs/gpu-run.md), or --smoke on CPU")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    plan = SMOKE if args.smoke else GPU
    if args.budget_s is not None:
        plan = replace(plan, budget_s=args.budget_s)
    if args.combos is not None:
        plan = replace(plan, combos=[c for c in args.combos.split(",") if c])
    start = time.monotonic()
    deadline = start + plan.budget_s
    out, corpus = Path(args.output_dir).resolve(), Path(args.corpus).resolve()
    long_corpus = bench_gpu_data.make_long_dpo_corpus(
        corpus, out / "long_corpus", plan.long_rows, 0, plan.long_seconds
    )
    shape = bench_gpu_trl.llm_shape(plan.small)
    rows: list[dict[str, Any]] = []
    finals: dict[str, Path] = {}
    for job in build_jobs(plan, corpus, long_corpus):
        new = [run_lalm(job, plan, out, deadline, finals)]
        if job.section == "dpo":
            long = job.labels["workload"] == "long"
            _, pairs, steps = plan.batches["dpo-long" if long else "dpo"]
            trl = bench_gpu_trl.TrlRun(plan.cpu, pairs, plan.warmup, steps - plan.warmup)
            manifest = (long_corpus if long else corpus) / "dpo" / "train.jsonl"
            new.append(bench_gpu_trl.run_trl(new[0], trl, shape, manifest, deadline))
            bench_gpu_trl.compare(*new)
        for row in new:
            print(
                f"[bench_gpu] {row['name']}: {row['status']} after {row.get('seconds', 0):.0f} s", flush=True
            )
        rows += new
    table = {
        "machine": _machine(plan.cpu),
        "date": time.strftime("%Y-%m-%d"),
        "mode": "smoke" if args.smoke else "gpu",
        "python": sys.version.split()[0],
        "budget_s": plan.budget_s,
        "seconds": time.monotonic() - start,
        "columns": list(COLUMNS),
        "rows": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    name = "bench_gpu_smoke" if args.smoke else "bench_gpu"
    (out / f"{name}.json").write_text(json.dumps(table, indent=2, default=str, allow_nan=False) + "\n")
    text = markdown(table)
    (out / f"{name}.md").write_text(text)
    print(text + f"wrote {out / name}.json and .md", flush=True)
    return table


if __name__ == "__main__":
    main()
