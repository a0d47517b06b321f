"""Batches for the stage tests: examples made by hand, and a batch with its placeholder taken out."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lalm.data.collators import placeholder_rows

SR = 16_000


def text_only(example_id: str, answer: str = "Hi.") -> dict[str, Any]:
    """An SFT turn without audio: a batch of these is what used to leave one rank's encoder idle."""
    return {
        "id": example_id,
        "source": f"t.jsonl:{example_id}",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Say something."}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ],
    }


def text_only_pair(example_id: str, chosen: str, rejected: str) -> dict[str, Any]:
    prompt = [{"role": "user", "content": [{"type": "text", "text": "Say something."}]}]
    return {
        "id": example_id,
        "source": f"d.jsonl:{example_id}",
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
    }


def marker(example_id: str, reason: str = "truncated_audio") -> dict[str, Any]:
    """ManifestDataset's stand-in for an example whose audio cannot be used."""
    bad = {"reason": reason, "file": f"/data/{example_id}.wav", "detail": "cut off"}
    return {"id": example_id, "source": f"m.jsonl:{example_id}", "bad": bad}


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), dtype=np.float32)


def without_placeholder(batch: dict[str, Any]) -> dict[str, Any]:
    """The batch as it was before placeholders existed: the placeholder's row(s) and its clip (the only
    clip: placeholders go only into batches without one) removed."""
    assert batch["placeholders"] == 1 and batch["input_features"].shape[0] == 1
    keep = ~placeholder_rows(batch)
    out = {k: v for k, v in batch.items() if k not in ("input_features", "feature_attention_mask")}
    for key in ("input_ids", "attention_mask", "labels"):
        out[key] = batch[key][keep]
    real = len(batch["ids"]) - 1
    out.update(
        ids=batch["ids"][:real],
        audio_clip_index=torch.zeros(0, dtype=torch.long),
        example_weights=batch["example_weights"][:real],
        placeholders=0,
        placeholder_tokens=0,
    )
    if "tasks" in batch:
        out["tasks"] = batch["tasks"][:real]
    if "num_pairs" in batch:
        out["num_pairs"] = real
    return out


class Engine(torch.nn.Module):
    """What a stage sees of a DeepSpeed engine: callable like the model, with the model as `.module`."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, **inputs: Any) -> Any:
        return self.module(**inputs)
