"""Benchmark: one DPO optimizer step of lalm vs TRL's DPOTrainer, same Qwen2 LLM, same batches (CPU or GPU).

    python scripts/bench_dpo.py                                   # short and long rows, ~1.5 min on 2 idle cores
    python scripts/bench_dpo.py --workloads short --steps 8 --output outputs/bench/dpo_cpu.json
    python scripts/bench_dpo.py --device cuda --bf16 --shape qwen2-1.5b --audio-seconds 2 \\
        --encoder whisper-large --reference cached --warmup 2 --steps 10     # issue 10's GPU comparison

Both sides train the same randomly initialised text-only Qwen2 (untied LM head, fp32 weights) on the same
random token ids: N pairs per step, each a P-token prompt with a C-token chosen and a C-token rejected
completion (the last completion token is EOS), a frozen copy of the initial model as reference,
sigmoid loss with beta 0.1, AdamW, gradient clipping at 1.0, constant learning rate.
  - lalm: Qwen2AudioForConditionalGeneration with that LLM inside, its encoder frozen (DPO's default)
    and made length-aware (lalm.models.builders does the same), wrapped in AudioLanguageModel, and
    lalm.stages.dpo.DpoStage on a batch in PreferenceCollator's format (see LalmDpo).
  - TRL: trl.DPOTrainer with its defaults (scripts/bench_dpo_trl.py says which, and what its LM head
    does on CPU and on CUDA: on CPU it scores every position, so a CPU ratio overstates a GPU one).
--shape picks the LLM (tiny: 256 wide, 4 layers, 32k vocabulary; qwen2-1.5b: the issue's TRL shape,
1536 x 28, 12/2 heads, 8960 FFN, 151,936 rows, untied); --hidden etc. then override single sizes.
--workload-preset picks the rows (cpu: short 8 x (90+21), long 2 x (256+256); gpu: the issue's
32 x (90+21) and 8 x (256+256)); its default follows --device, and --pairs etc. override it.
--device cuda moves models and batches to the GPU and synchronises before each clock read; --bf16 is
mixed precision on both sides (fp32 master weights, bf16 autocast around forward and loss: TRL's
DPOConfig(bf16=True) through accelerate; lalm's torch.autocast). On CUDA lalm's AdamW is fused, as
TRL's default adamw_torch_fused is (on CPU lalm keeps torch's default AdamW, as in PERF.md's numbers).
--audio-seconds S > 0 (lalm only; TRL stays text-only at the same LLM positions per row): each pair's
prompt carries one clip of S seconds: 100·S real mel frames, whose audio_token_count(100·S) tokens (25 per
second) take the prompt's positions after AUDIO_OFFSET text tokens, so the LLM sees as many positions
as TRL's; --encoder tiny (1 layer, 64 wide) or whisper-large (Whisper-large-v3's 32 x 1280) is built
either way (its weights count in lalm's memory) and runs only with audio. With audio the step-0
log-prob comparison with TRL is skipped (different inputs); the log-2 check still holds.
--reference cached (lalm only): the reference's summed log-probs are computed once per batch before
the timed steps and the reference model is released; the steps then run no reference forward.

Each side runs in its own spawned process (separate peak RSS and, on CUDA, its own allocator: one GPU
shared, one side computing at a time); the parent steps them in lockstep, alternating which goes first,
so a shared machine's drift hits both alike. A step is timed from batch in hand to the optimizer step
done (TRL: on_step_begin -> on_step_end, which includes its host-to-device copy of the ids; data
loading and logging excluded; lalm's batches are on the device before).
Before the first update policy == reference, so both losses must be log 2; the script fails otherwise.
ratio_vs_trl = lalm tokens/s / TRL tokens/s (> 1: lalm is faster), tokens = 2N(P+C) LLM positions per
step on both sides (audio tokens included). MFU (--device cuda; PERF.md's convention):
    MFU = (8·N_llm·tokens + 2·N_enc·encoder positions) per step / step seconds / --peak-tflops,
N_llm = all Qwen2ForCausalLM parameters, 8 = 6 (policy forward + backward) + 2 (reference forward, still
counted when cached), encoder positions = N·((100·S - 1) // 2 + 1) (50 per second of audio: its frozen
forward, lalm only; 0 for TRL and without audio). Attention's own FLOPs are left out.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

try:  # imported as scripts.bench_dpo (the tests)
    from . import bench_dpo_batches, bench_dpo_lalm, bench_dpo_workers
except ImportError:  # run as scripts/bench_dpo.py: its folder is sys.path[0]
    import bench_dpo_batches  # type: ignore[no-redef]
    import bench_dpo_lalm  # type: ignore[no-redef]
    import bench_dpo_workers  # type: ignore[no-redef]

Audio, Workload = bench_dpo_batches.Audio, bench_dpo_batches.Workload
Shape, SHAPES, ENCODERS = bench_dpo_lalm.Shape, bench_dpo_lalm.SHAPES, bench_dpo_lalm.ENCODERS
AUDIO_OFFSET = bench_dpo_batches.AUDIO_OFFSET
# (pairs, prompt, completion). gpu: the rows; cpu: 8 and 2 pairs keep a CPU step near a second.
WORKLOADS = {
    "cpu": {"short": (8, 90, 21), "long": (2, 256, 256)},
    "gpu": {"short": (32, 90, 21), "long": (8, 256, 256)},
}


def _check_same_start(
    runs: dict[str, dict[str, Any]], audio: bool = False, bf16: bool = False
) -> dict[str, float]:
    """Same LLM weights on both sides, and at step 0 (policy == reference) a loss of log 2 on both;
    without audio (same inputs on both sides) also the same chosen log-probs."""
    if runs["lalm"]["setup"]["digest"] != runs["trl"]["setup"]["digest"]:
        raise RuntimeError("lalm and TRL start from different weights")
    first = {side: runs[side]["steps"][0] for side in runs}
    losses = {side: first[side]["loss"] for side in runs}
    print(f"  step-0 loss: lalm {losses['lalm']:.6f}, TRL {losses['trl']:.6f}, log 2 = {math.log(2):.6f}")
    # bf16: policy and reference run the same kernels on the same weights, but leave room for a
    # kernel that is not bitwise deterministic (0.001 in the loss is 0.02 nats of summed log-prob).
    loss_tolerance, logps_tolerance = (1e-3, 1e-2) if bf16 else (1e-4, 1e-4)
    for side, loss in losses.items():
        if abs(loss - math.log(2)) > loss_tolerance:
            raise RuntimeError(f"{side}'s step-0 loss is {loss:.6f}, not log 2: policy != reference?")
    logps = {side: first[side]["logps_chosen"] for side in runs}
    if not audio and not math.isclose(logps["lalm"], logps["trl"], rel_tol=logps_tolerance):
        raise RuntimeError(
            f"step-0 chosen log-probs differ: lalm {logps['lalm']:.4f}, TRL {logps['trl']:.4f}"
        )
    return {
        f"{side}_step0_{key}": value[side]
        for key, value in (("loss", losses), ("logps_chosen", logps))
        for side in runs
    }


def step_flops(
    llm_params: int, encoder_params: int, workload: Workload, audio: Audio | None
) -> dict[str, int]:
    """Model FLOPs of one step per side (see the module docstring)."""
    llm = 8 * llm_params * workload.tokens_per_step
    encoder = 2 * encoder_params * audio.encoder_positions * workload.pairs if audio else 0
    return {"lalm": llm + encoder, "trl": llm}


def make_spec(args: argparse.Namespace, shape: Shape, workload: Workload) -> dict[str, Any]:
    """What a worker process is told: parse_args' options, the LLM shape and the rows."""
    keys = ("warmup", "steps", "seed", "lr", "threads", "trl_gradient_checkpointing", "device", "bf16")
    spec = {key: getattr(args, key) for key in keys}
    spec |= {"audio_seconds": args.audio_seconds, "encoder": args.encoder, "reference": args.reference}
    spec["lalm_activation_checkpointing"] = args.lalm_activation_checkpointing
    return spec | {"shape": asdict(shape), "workload": asdict(workload)}


def run_trl_alone(args: argparse.Namespace, shape: Shape, workload: Workload) -> dict[str, Any]:
    """TRL's side only (scripts/bench_gpu.py compares it with lalm's real trainer): its setup, every
    step's seconds and loss, and its final peak memory. Step 0 must give log 2, as in the lockstep run."""
    run = bench_dpo_workers.run_lockstep(make_spec(args, shape, workload), only="trl")["trl"]
    loss = run["steps"][0]["loss"]
    tolerance = 1e-3 if args.bf16 else 1e-4
    if abs(loss - math.log(2)) > tolerance:
        raise RuntimeError(f"TRL's step-0 loss is {loss:.6f}, not log 2: policy != reference?")
    return run


def run_workload(args: argparse.Namespace, shape: Shape, workload: Workload) -> dict[str, Any]:
    runs = bench_dpo_workers.run_lockstep(make_spec(args, shape, workload))
    audio = Audio(args.audio_seconds) if args.audio_seconds else None
    result: dict[str, Any] = {**asdict(workload), "tokens_per_step": workload.tokens_per_step}
    result.update(_check_same_start(runs, audio is not None, args.bf16))
    setup = runs["lalm"]["setup"]
    flops = step_flops(setup["llm_params"], setup["encoder_params"], workload, audio)
    for side in ("lalm", "trl"):
        timed = [s["seconds"] for s in runs[side]["steps"][args.warmup :]]
        median = statistics.median(timed)
        result[f"{side}_step_s"] = median
        result[f"{side}_steps_s"] = timed  # every timed step: on a shared machine the spread is wide
        result[f"{side}_tokens_per_s"] = workload.tokens_per_step / median
        result[f"{side}_flops_per_step"] = flops[side]
        if args.device == "cuda":
            result[f"{side}_mfu"] = flops[side] / median / (args.peak_tflops * 1e12)
        result[f"{side}_rss_after_imports_mb"] = runs[side]["setup"]["rss_after_imports_mb"]
        result.update({f"{side}_{key}": value for key, value in runs[side]["final"].items()})
    result["ratio_vs_trl"] = result["lalm_tokens_per_s"] / result["trl_tokens_per_s"]
    # Same updates on both sides, so without audio the losses should follow each other after step 0 too.
    result["loss_max_abs_diff"] = max(
        abs(a["loss"] - b["loss"]) for a, b in zip(runs["lalm"]["steps"], runs["trl"]["steps"], strict=True)
    )
    result.update(llm_params=setup["llm_params"], encoder_params=setup["encoder_params"])
    result["lalm_reference_cache_s"] = setup["reference_cache_s"]
    result["trl_gradient_checkpointing"] = runs["trl"]["setup"]["gradient_checkpointing"]
    return result


def _machine(device: str) -> str:
    cpuinfo = Path("/proc/cpuinfo")
    names = (
        [line for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        if cpuinfo.exists()
        else []
    )
    cpu = names[0].split(":", 1)[1].strip() if names else platform.processor() or platform.machine()
    gpu = f"{torch.cuda.get_device_name(0)}, " if device == "cuda" else ""
    return f"{gpu}{cpu}, {os.cpu_count()} CPUs, {platform.platform()}"


def _table(workloads: dict[str, dict[str, Any]], device: str) -> str:
    memory = "peak_gpu_allocated_mb" if device == "cuda" else "peak_rss_mb"
    label = "GPU MiB" if device == "cuda" else "RSS MB"
    mfu = f" {'lalm MFU':>8} {'TRL MFU':>7}" if device == "cuda" else ""
    lines = [
        f"{'workload':>8} {'N x (P+C)':>12} {'lalm s/step':>12} {'TRL s/step':>11} {'lalm tok/s':>11} "
        f"{'TRL tok/s':>10} {'ratio':>6} {'lalm ' + label:>12} {'TRL ' + label:>11}{mfu}"
    ]
    for name, r in workloads.items():
        rows = f"{r['pairs']} x ({r['prompt']}+{r['completion']})"
        mfu = f" {r['lalm_mfu']:8.1%} {r['trl_mfu']:7.1%}" if device == "cuda" else ""
        lines.append(
            f"{name:>8} {rows:>12} {r['lalm_step_s']:12.3f} {r['trl_step_s']:11.3f} "
            f"{r['lalm_tokens_per_s']:11.0f} {r['trl_tokens_per_s']:10.0f} {r['ratio_vs_trl']:6.2f} "
            f"{r['lalm_' + memory]:12.0f} {r['trl_' + memory]:11.0f}{mfu}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast around fp32 weights, both sides")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny", help="LLM preset (see above)")
    for name in ("hidden", "layers", "heads", "kv_heads", "intermediate", "vocab"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, help="overrides --shape's")
    parser.add_argument("--workload-preset", choices=sorted(WORKLOADS), help="default: cpu, or gpu on cuda")
    for name in ("pairs", "prompt", "completion", "long_pairs", "long_prompt", "long_completion"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, help="overrides --workload-preset's")
    parser.add_argument("--workloads", default="short,long", help="comma-separated: short, long")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (step 0 is checked)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per side and workload")
    parser.add_argument("--lr", type=float, default=1e-6, help="DPOConfig's default learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads per side (default: 2; cuda: CPUs / 2)")
    parser.add_argument(
        "--trl-gradient-checkpointing",
        choices=("default", "on", "off"),
        default="default",
        help="default: DPOConfig's own default (on in TRL 1.16); lalm does not checkpoint",
    )
    parser.add_argument("--audio-seconds", type=float, default=0.0, help="lalm: one clip per pair (0: none)")
    parser.add_argument(
        "--encoder", choices=sorted(ENCODERS), default="tiny", help="lalm's frozen encoder (built either way)"
    )
    parser.add_argument("--reference", choices=("live", "cached"), default="live", help="lalm's reference")
    parser.add_argument(
        "--lalm-activation-checkpointing",
        choices=("none", "full", "llm", "encoder"),
        default="none",
        help="lalm's trainer.activation_checkpointing (TRL checkpoints by default: 'llm' compares memory alike)",
    )
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="MFU's peak (H100/H200 dense bf16)")
    parser.add_argument("--output", help="default: outputs/bench/dpo_cpu.json, or dpo_gpu.json on cuda")
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be at least 1 (step 0 is the untimed log-2 check)")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA GPU here (run on a GPU machine, or --device cpu)")
    if args.audio_seconds and not (Audio(args.audio_seconds).tokens >= 1 and args.audio_seconds <= 30):
        parser.error(
            f"--audio-seconds {args.audio_seconds}: 0 (no audio), or 0.03 to 30 s (the encoder's window)"
        )
    args.threads = args.threads or (2 if args.device == "cpu" else max(1, (os.cpu_count() or 2) // 2))
    args.workload_preset = args.workload_preset or ("cpu" if args.device == "cpu" else "gpu")
    args.output = args.output or f"outputs/bench/dpo_{'cpu' if args.device == 'cpu' else 'gpu'}.json"
    return args


def select(args: argparse.Namespace) -> tuple[Shape, list[Workload]]:
    """The LLM shape and the chosen workloads: presets, then the single options given; validated."""
    sizes = {k: getattr(args, k) for k in asdict(Shape()) if getattr(args, k) is not None}
    shape = replace(SHAPES[args.shape], **sizes)
    available, prefix = {}, {"short": "", "long": "long_"}
    for name, preset in WORKLOADS[args.workload_preset].items():
        given = (getattr(args, prefix[name] + key) for key in ("pairs", "prompt", "completion"))
        available[name] = Workload(name, *(d if g is None else g for g, d in zip(given, preset, strict=True)))
    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if not names or set(names) - set(available):
        raise SystemExit(f"--workloads {args.workloads!r}: choose from {sorted(available)}")
    workloads = [available[name] for name in names]
    audio_span = AUDIO_OFFSET + Audio(args.audio_seconds).tokens if args.audio_seconds else 0
    for w in workloads:
        if audio_span > w.prompt:
            raise SystemExit(
                f"--audio-seconds {args.audio_seconds}: {audio_span - AUDIO_OFFSET} audio tokens after "
                f"{AUDIO_OFFSET} text tokens do not fit the {w.name} workload's {w.prompt}-token prompt: "
                "give fewer seconds or a longer --prompt/--long-prompt"
            )
    return shape, workloads


def main(argv: list[str] | None = None) -> dict[str, Any]:
    trl_version = importlib.metadata.version("trl")  # the parent does not import TRL, the workers do
    args = parse_args(argv)
    shape, selected = select(args)
    audio = Audio(args.audio_seconds) if args.audio_seconds else None
    inputs = f"{audio.tokens} audio tokens/clip ({args.encoder} encoder)" if audio else "text only"
    print(
        f"DPO step, lalm vs TRL {trl_version} on {args.device}{' bf16' if args.bf16 else ''}: "
        f"Qwen2 {shape}, lalm {inputs}, {args.reference} reference, {args.threads} threads, "
        f"{args.warmup} warm-up + {args.steps} timed steps"
    )
    start = time.perf_counter()
    workloads = {}
    for workload in selected:
        print(f"{workload.name}: {workload}")
        workloads[workload.name] = run_workload(args, shape, workload)
    print(_table(workloads, args.device))
    first = selected[0].name
    result = {
        "machine": _machine(args.device),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "trl": trl_version,
        "device": args.device,
        "bf16": args.bf16,
        "threads": args.threads,
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "shape_preset": args.shape,
        "shape": asdict(shape),
        "workload_preset": args.workload_preset,
        "audio_seconds": args.audio_seconds,
        "audio_tokens_per_clip": audio.tokens if audio else 0,
        "encoder": args.encoder,
        "lalm_reference": args.reference,
        "lalm_activation_checkpointing": args.lalm_activation_checkpointing,
        "peak_flops_per_s": args.peak_tflops * 1e12 if args.device == "cuda" else None,
        "workloads": workloads,
        "ratio_vs_trl": workloads[first]["ratio_vs_trl"],
        "ratio_workload": first,
        "seconds": time.perf_counter() - start,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"ratio_vs_trl ({first}): {result['ratio_vs_trl']:.2f}; wrote {output}")
    return result


if __name__ == "__main__":
    main()
