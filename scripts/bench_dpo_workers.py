"""The two worker processes of scripts/bench_dpo.py and the lockstep protocol that steps them.

Each side (lalm, TRL) runs in its own spawned process, so that its peak RSS and, on CUDA, its allocator
are its own; the parent steps them alternately, one side computing at a time, and each step's clock
runs from batch in hand to the optimizer step done (see scripts/bench_dpo.py's docstring).
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
import traceback
import warnings
from multiprocessing.connection import Connection
from typing import Any

import torch
from transformers import Qwen2ForCausalLM

from lalm.stages.base import to_device

try:  # imported as scripts.bench_dpo_workers
    from . import bench_dpo_batches, bench_dpo_lalm, bench_dpo_trl
except ImportError:  # run from scripts/: its folder is sys.path[0]
    import bench_dpo_batches  # type: ignore[no-redef]
    import bench_dpo_lalm  # type: ignore[no-redef]
    import bench_dpo_trl  # type: ignore[no-redef]

Audio, Workload, Shape = bench_dpo_batches.Audio, bench_dpo_batches.Workload, bench_dpo_lalm.Shape


def _synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work, so that a clock read after it counts it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _gpu_peaks(device: torch.device) -> dict[str, float]:
    """This process's peak GPU memory (MiB) over its whole run: tensors, and what the allocator held."""
    if device.type != "cuda":
        return {}
    mib = 2**20
    return {
        "peak_gpu_allocated_mb": torch.cuda.max_memory_allocated(device) / mib,
        "peak_gpu_reserved_mb": torch.cuda.max_memory_reserved(device) / mib,
    }


def _wait_for_turn(conn: Connection) -> None:
    """Tell the parent this side is idle, then block until it is this side's turn to step."""
    conn.send({"ready": True})
    conn.recv()


def _peak_rss_mb() -> float:
    """This process's high-water RSS so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _setup(
    spec: dict[str, Any],
) -> tuple[Workload, Qwen2ForCausalLM, dict[str, torch.Tensor], dict[str, Any]]:
    """The worker's workload, LLM (on the CPU), all steps' ids, and what the parent checks about it."""
    rss_after_imports = _peak_rss_mb()
    # Each side is one process on its own: a launcher's (or an earlier in-process run's) rendezvous
    # variables would make accelerate join a process group on a port that is not ours.
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(name, None)
    if spec["device"] == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed (imported by accelerate) probes for a GPU
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' renames, TRL's defaults
    torch.set_num_threads(spec["threads"])
    shape, workload = Shape(**spec["shape"]), Workload(**spec["workload"])
    data = bench_dpo_batches.make_pairs(workload, spec["warmup"] + spec["steps"], shape.vocab, spec["seed"])
    llm = bench_dpo_lalm.build_llm(shape, spec["seed"])
    setup = {
        "digest": bench_dpo_lalm.weights_digest(
            llm
        ),  # of the LLM alone: lalm's audio model wraps these weights
        "llm_params": sum(p.numel() for p in llm.parameters()),
        "rss_after_imports_mb": rss_after_imports,
    }
    return workload, llm, data, setup


def _lalm_worker(conn: Connection, spec: dict[str, Any]) -> None:
    try:
        workload, llm, data, setup = _setup(spec)
        device = torch.device(spec["device"])
        audio = Audio(spec["audio_seconds"]) if spec["audio_seconds"] else None
        vocab = llm.config.vocab_size
        checkpointing = spec.get("lalm_activation_checkpointing", "none")
        lalm = bench_dpo_lalm.LalmDpo(llm, spec["encoder"], device, spec["bf16"], spec["lr"], checkpointing)
        del llm
        batches = bench_dpo_batches.lalm_batches(data, workload.pairs, vocab, audio, spec["seed"])
        batches = [to_device(batch, device) for batch in batches]
        cache_s = None
        if spec["reference"] == "cached":
            start = time.perf_counter()
            lalm.cache_reference(batches)
            _synchronize(device)
            cache_s = time.perf_counter() - start
        conn.send({**setup, "encoder_params": lalm.encoder_params, "reference_cache_s": cache_s})
        for batch in batches:
            _wait_for_turn(conn)
            _synchronize(device)
            start = time.perf_counter()
            out = lalm.step(batch)
            _synchronize(device)
            seconds = time.perf_counter() - start
            # Floats only: a tensor in a message would travel as shared memory the worker may free first.
            units = float(out.units)
            loss, logps = float(out.loss.detach()) / units, float(out.metrics["logps/chosen"]) / units
            conn.send({"seconds": seconds, "loss": loss, "logps_chosen": logps})
        conn.send({"peak_rss_mb": _peak_rss_mb(), **_gpu_peaks(device)})
    except BaseException:
        conn.send({"error": traceback.format_exc()})
        raise


def _trl_worker(conn: Connection, spec: dict[str, Any]) -> None:
    try:
        workload, llm, data, setup = _setup(spec)
        device = torch.device(spec["device"])
        n = workload.pairs
        first = bench_dpo_batches.lalm_batch(data["prompt"][:n], data["chosen"][:n], data["rejected"][:n])[
            "input_ids"
        ]
        clock: dict[str, float] = {}

        def begin() -> None:
            _wait_for_turn(conn)
            _synchronize(device)
            clock["start"] = time.perf_counter()

        def end(last: dict[str, float]) -> None:
            _synchronize(device)
            conn.send({"seconds": time.perf_counter() - clock["start"], **last})

        with tempfile.TemporaryDirectory(prefix="bench_dpo_trl_") as output_dir:
            config = bench_dpo_trl.trl_config(
                spec, n, workload.prompt + workload.completion, output_dir
            )  # no truncation
            llm.to(device)  # type: ignore[arg-type]  # (transformers types .to through a decorator)
            trainer = bench_dpo_trl.build_trl_trainer(llm, data, config, first, begin, end)
            del llm
            conn.send({**setup, "gradient_checkpointing": bool(trainer.args.gradient_checkpointing)})
            trainer.train()
        conn.send({"peak_rss_mb": _peak_rss_mb(), **_gpu_peaks(device)})
    except BaseException:
        conn.send({"error": traceback.format_exc()})
        raise


def _receive(conn: Connection, side: str) -> dict[str, Any]:
    try:
        message = conn.recv()
    except EOFError:
        raise RuntimeError(f"the {side} worker died without a word (out of memory? killed?)") from None
    if "error" in message:
        raise RuntimeError(f"the {side} worker failed:\n{message['error']}")
    return message


def run_lockstep(spec: dict[str, Any], only: str | None = None) -> dict[str, dict[str, Any]]:
    """Both sides (or `only` one: "lalm" or "trl") in spawned processes, stepped alternately;
    {side: {setup, steps, final}}, final: the peak RSS (and GPU memory) after the last step."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    sides = {"lalm": _lalm_worker, "trl": _trl_worker}
    sides = {only: sides[only]} if only else sides
    conns, processes = {}, {}
    for side, target in sides.items():
        parent, child = context.Pipe()
        processes[side] = context.Process(target=target, args=(child, spec), daemon=True)
        processes[side].start()
        child.close()  # so that a dead worker reads as EOF here instead of a hang
        conns[side] = parent
    try:
        runs: dict[str, dict[str, Any]] = {
            side: {"setup": _receive(conns[side], side), "steps": []} for side in sides
        }
        for side in sides:
            _receive(conns[side], side)  # ready for step 0: both are idle
        for k in range(spec["warmup"] + spec["steps"]):
            order = list(sides) if k % 2 == 0 else list(sides)[::-1]
            for side in order:
                conns[side].send("step")
                runs[side]["steps"].append(_receive(conns[side], side))
                # Wait until this side is idle again (TRL logs and loads the next batch between steps; the
                # last step is followed by the peak memory) before the other side's step starts.
                after = _receive(conns[side], side)
                if "peak_rss_mb" in after:
                    runs[side]["final"] = after
    finally:
        for process in processes.values():
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    return runs
