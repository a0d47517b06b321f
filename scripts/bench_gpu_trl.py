"""TRL's rows of scripts/bench_gpu.py: trl.DPOTrainer (scripts/bench_dpo.py's TRL side, run alone) on
the LLM shape of lalm's model config, with lalm's DPO job's pairs per step and mean LLM positions per
row (prompt with its audio positions + completion, bench_gpu_data.dpo_row_lengths); its tokens/s,
MFU (PERF.md's 8·N_llm per position) and peak memory; and lalm's ratio to it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

try:  # imported as scripts.bench_gpu_trl (the tests)
    from . import bench_dpo, bench_gpu_data, bench_gpu_jobs
except ImportError:  # run from scripts/bench_gpu.py: its folder is sys.path[0]
    import bench_dpo  # type: ignore[no-redef]
    import bench_gpu_data  # type: ignore[no-redef]
    import bench_gpu_jobs  # type: ignore[no-redef]


@dataclass(frozen=True)
class TrlRun:
    """How TRL's side runs: on which device, how many steps, how many pairs per step."""

    cpu: bool
    pairs: int
    warmup: int
    steps: int  # timed, after the warm-up
    max_length: int = 1024  # data.max_length of lalm's run: its collator truncates (drops) alike


def trl_args(run: TrlRun, shape: Any, workload: str, prompt: int, completion: int) -> argparse.Namespace:
    """bench_dpo's options for one workload of `run.pairs` x (prompt + completion) at `shape`."""
    argv = ["--device", "cpu" if run.cpu else "cuda", "--warmup", str(run.warmup), "--steps", str(run.steps)]
    argv += ["--threads", "1"] if run.cpu else ["--bf16"]
    argv += [f"--{k.replace('_', '-')}={v}" for k, v in asdict(shape).items()]
    prefix = "" if workload == "short" else f"{workload}-"
    argv += ["--workloads", workload, f"--{prefix}pairs={run.pairs}"]
    argv += [f"--{prefix}prompt={prompt}", f"--{prefix}completion={completion}"]
    return bench_dpo.parse_args(argv)


def run_trl(
    lalm_row: dict[str, Any], run: TrlRun, shape: Any, manifest: Path, deadline: float
) -> dict[str, Any]:
    """TRL's row for lalm's DPO job's row: its pairs per step, its rows' mean prompt and completion."""
    name, workload_name = lalm_row["name"].replace("dpo-", "trl-"), lalm_row.get("workload", "short")
    row: dict[str, Any] = {
        "name": name,
        "section": "dpo",
        "side": "trl",
        "stage": "dpo",
        "workload": workload_name,
    }
    if lalm_row.get("status") != "ok":
        return row | {"status": f"skipped ({lalm_row['name']} did not run)"}
    if time.monotonic() > deadline:
        return row | {"status": "skipped (time budget)"}
    lengths = bench_gpu_data.dpo_row_lengths(lalm_row["init_from"], manifest, run.max_length)
    prompt, completion = max(1, round(lengths.prompt)), max(1, round(lengths.completion))
    args = trl_args(run, shape, workload_name, prompt, completion)
    shape, (workload,) = bench_dpo.select(args)
    print(f"[bench_gpu] {row['name']}: TRL {workload}", flush=True)
    start = time.monotonic()
    try:
        run = bench_dpo.run_trl_alone(args, shape, workload)
    except RuntimeError as err:
        oom = any(mark in str(err) for mark in bench_gpu_jobs.OOM_MARKS)
        return row | {
            "status": "OOM" if oom else "failed",
            "log_tail": str(err)[-2000:],
            "seconds": time.monotonic() - start,
        }
    return row | trl_summary(run, args, workload) | {"status": "ok", "seconds": time.monotonic() - start}


def trl_summary(run: dict[str, Any], args: argparse.Namespace, workload: Any) -> dict[str, Any]:
    """TRL's medians, MFU and peak memory by bench_dpo's conventions (PERF.md's formula)."""
    seconds = statistics.median(step["seconds"] for step in run["steps"][args.warmup :])
    flops = bench_dpo.step_flops(run["setup"]["llm_params"], 0, workload, None)["trl"]
    gpu = "peak_gpu_allocated_mb" in run["final"]
    out = {
        "tokens_per_s": workload.tokens_per_step / seconds,
        "model_tflops_per_s": flops / seconds / 1e12,
        "mfu": None if args.device == "cpu" else flops / seconds / (args.peak_tflops * 1e12),
        "peak_mb": run["final"]["peak_gpu_allocated_mb" if gpu else "peak_rss_mb"],
        "memory": "gpu" if gpu else "host",
        "tokens": workload.tokens_per_step,
        "rows_per_step": workload.pairs,
        "row_positions": f"{workload.prompt}+{workload.completion}",
        "timed_steps": len(run["steps"]) - args.warmup,
        "gradient_checkpointing": run["setup"]["gradient_checkpointing"],
    }
    return out


def llm_shape(overrides: list[str]) -> Any:
    """bench_dpo's Shape of the model group these overrides select (the LLM TRL's side trains)."""
    from lalm.config.checks import compose_config
    from lalm.config.store import register_configs

    register_configs()
    model = compose_config(
        bench_gpu_jobs.ROOT / "configs", "train", [*overrides, "output_dir=unused", "data.dir=unused"]
    ).model
    vocab = model.embedding_rows or model.vocab_size
    return bench_dpo.Shape(
        model.llm_hidden_size,
        model.llm_layers,
        model.llm_heads,
        model.llm_kv_heads,
        model.llm_intermediate_size,
        vocab,
    )


def compare(lalm: dict[str, Any], trl: dict[str, Any]) -> None:
    """lalm's row gets its ratio to TRL's tokens/s and its peak memory above TRL's (same memory kind)."""
    if lalm.get("tokens_per_s") and trl.get("tokens_per_s"):
        lalm["ratio_vs_trl"] = lalm["tokens_per_s"] / trl["tokens_per_s"]
    if lalm.get("peak_mb") is not None and trl.get("peak_mb") is not None and lalm["memory"] == trl["memory"]:
        lalm["peak_over_trl_mb"] = lalm["peak_mb"] - trl["peak_mb"]
