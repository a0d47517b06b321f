"""Benchmark: one training micro-batch (forward + backward of the LM loss) under lalm's speed options.

    python scripts/bench_step.py --data outputs/demo/data --checkpoint outputs/demo/init

On real batches of a corpus's pretraining manifest, with a model checkpoint folder (e.g. the demo's
random init), times forward+backward per micro-batch for:
  - output layer on every position (transformers' forward, then the loss) vs only on supervised
    positions (lalm.models.training.AudioLanguageModel);
  - batches in the stage's order vs grouped by length (data.length_groups, lalm.data.sampling).
Every micro-batch of `--steps` global batches is timed (the same examples in both orders when --steps
is a multiple of --length-groups); configurations are interleaved and repeated, since a shared
machine's speed drifts, and the mean per micro-batch is printed. It also prints the padded and real
sizes of the batches and checks that both loss paths give the same loss.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from lalm.config.model import PretrainedModelConfig
from lalm.data.collators import CollatorConfig, model_inputs
from lalm.data.dataset import ManifestDataset
from lalm.data.sampling import LengthGroupedStream, record_cost
from lalm.losses.full_logits import lm_loss_sum
from lalm.models.builders import build_model
from lalm.models.training import forward_batch
from lalm.stages.base import masked_labels, to_device
from lalm.stages.lm import LanguageModelingStage
from lalm.stages.registry import build_collator


def _full_loss(model: Any, batch: dict[str, Any]) -> torch.Tensor:
    return lm_loss_sum(model(**model_inputs(batch), use_cache=False).logits, masked_labels(batch))[0]


def _packed_loss(model: Any, batch: dict[str, Any]) -> torch.Tensor:
    return -forward_batch(model, batch, masked_labels(batch)).supervised.logps().sum()


def _step_seconds(
    model: Any, batch: dict[str, Any], loss_fn: Callable[..., torch.Tensor], device: str
) -> float:
    model.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    loss_fn(model, batch).backward()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="corpus folder with pretrain/train.jsonl")
    parser.add_argument("--checkpoint", required=True, help="model folder (config, weights, processor)")
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--global-batch", type=int, default=16)
    parser.add_argument("--length-groups", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8, help="global batches per configuration")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (a rank's share of the cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, processor = build_model(PretrainedModelConfig(path=args.checkpoint))
    model.to(device).train()
    dataset = ManifestDataset.from_manifest(f"{args.data}/pretrain/train.jsonl", "pretrain")
    stage = LanguageModelingStage("pretrain")
    collator = build_collator("pretrain", processor, CollatorConfig(max_length=4096))
    base = stage.sample_stream(dataset, 0)
    costs = [record_cost(record) for record in dataset.records]
    orders = {
        "stage order": base,
        "length groups": LengthGroupedStream(base, costs, args.global_batch, args.length_groups, 0),
    }
    batches: dict[str, list[dict[str, Any]]] = {}
    per_step = args.global_batch // args.micro_batch
    for name, stream in orders.items():
        # Every micro-batch of --steps global batches: with --steps a multiple of --length-groups both
        # orders hold exactly the same examples, only batched differently.
        indices = [
            [stream[s * args.global_batch + m * args.micro_batch + j] for j in range(args.micro_batch)]
            for s in range(args.steps)
            for m in range(per_step)
        ]
        batches[name] = [
            to_device(collator([dataset[i] for i in idx]), torch.device(device)) for idx in indices
        ]
        padded = statistics.mean(b["input_ids"].numel() for b in batches[name])
        real = statistics.mean(float(b["attention_mask"].sum()) for b in batches[name])
        frames = statistics.mean(
            b["input_features"].shape[0] * b["input_features"].shape[-1] for b in batches[name]
        )
        print(
            f"{name:>14}: {padded:7.0f} LLM positions per micro-batch ({real:.0f} real), {frames:7.0f} mel frames"
        )
    check = batches["stage order"][0]
    with torch.no_grad():
        full, packed = _full_loss(model, check), _packed_loss(model, check)
    torch.testing.assert_close(packed, full, rtol=1e-4, atol=1e-3)
    print(
        f"loss of one batch: all positions {float(full):.4f}, supervised positions only {float(packed):.4f}"
    )
    losses = {"all positions": _full_loss, "supervised only": _packed_loss}
    times: dict[tuple[str, str], list[float]] = {(o, name): [] for o in orders for name in losses}
    for _ in range(args.repeats):
        for index in range(len(batches["stage order"])):
            for order in orders:
                for loss_name, loss_fn in losses.items():
                    times[(order, loss_name)].append(
                        _step_seconds(model, batches[order][index], loss_fn, device)
                    )
    # The mean, not the median: long and short batches must all count, as they do in training.
    baseline = statistics.mean(times[("stage order", "all positions")])
    count = len(batches["stage order"])
    print(
        f"\nforward+backward per micro-batch of {args.micro_batch} on {device}, mean of {count} x {args.repeats}:"
    )
    for (order, loss_name), values in times.items():
        mean = statistics.mean(values)
        print(
            f"  {order:>14}, output layer on {loss_name:<16}: {1000 * mean:7.1f} ms  ({baseline / mean:.2f}x)"
        )


if __name__ == "__main__":
    main()
