"""The data of scripts/bench_gpu.py: long-audio DPO rows made from a corpus's short clips, and the
row lengths TRL's side is given so that it sees as many LLM positions per row as lalm's trainer.

Long rows (issue 10: 10-30 s of audio = 250-750 audio positions, plus 50-300 text tokens): each row
joins the clips of several of the corpus's DPO ASR pairs end to end (numpy + soundfile, no speech
synthesis, so it runs on a machine without espeak-ng) until it reaches a duration drawn uniformly in
[10, 30) s; its chosen answer is the joined transcripts, its rejected one the same with the first
pair's rejected transcript (one word swapped) in the first place.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16_000  # the corpus's and the feature extractor's
LONG_SECONDS = (10.0, 30.0)  # drawn per row; 30 s is the encoder's window


def _asr_pairs(manifest: Path) -> list[dict[str, Any]]:
    """The manifest's ASR pairs whose prompt holds exactly one clip, its path made absolute."""
    pairs = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        clips = [c for m in record["prompt"] for c in m["content"] if c.get("type") == "audio"]
        if record.get("task") == "asr" and len(clips) == 1:
            path = Path(clips[0]["audio"]["path"])
            record["_wav"] = path if path.is_absolute() else (manifest.parent / path).resolve()
            record["_seconds"] = sf.info(str(record["_wav"])).frames / SAMPLE_RATE
            pairs.append(record)
    return pairs


def _joined(parts: list[dict[str, Any]], index: int, wav: Path) -> dict[str, Any]:
    """One long DPO record from `parts` (the first one's prompt text and fields), its audio at `wav`."""
    audio = np.concatenate([sf.read(p["_wav"], dtype="int16")[0] for p in parts])
    sf.write(wav, audio, SAMPLE_RATE, subtype="PCM_16")
    first = parts[0]
    text = [c for m in first["prompt"] for c in m["content"] if c.get("type") == "text"]
    clip = {"type": "audio", "audio": {"path": f"../audio/{wav.name}", "duration": len(audio) / SAMPLE_RATE}}
    record = {
        k: v for k, v in first.items() if k not in ("_wav", "_seconds", "id", "prompt", "chosen", "rejected")
    }
    return {
        **record,
        "id": f"long{index:05d}-dpo",
        "prompt": [{"role": "user", "content": [clip, *text]}],
        "chosen": " ".join(p["chosen"] for p in parts),
        "rejected": " ".join([first["rejected"], *(p["chosen"] for p in parts[1:])]),
    }


def make_long_dpo_corpus(
    corpus: Path,
    out: Path,
    rows: dict[str, int],
    seed: int = 0,
    seconds: tuple[float, float] = LONG_SECONDS,
) -> Path:
    """Write out/dpo/{split}.jsonl with rows[split] long pairs each (and their WAVs in out/audio/) from
    corpus/dpo/train.jsonl's ASR pairs, each row's audio drawn in [seconds[0], seconds[1]) s (the
    smoke run's tiny model has a 6-s window); returns `out`, a data.dir for the trainer. Rerunning with
    the same arguments rewrites the same files."""
    pairs = _asr_pairs(corpus / "dpo" / "train.jsonl")
    if len(pairs) < 2:
        raise ValueError(
            f"{corpus}/dpo/train.jsonl has {len(pairs)} single-clip ASR pairs; long rows need more"
        )
    rng = random.Random(seed)
    (out / "dpo").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    index = 0
    for split, count in rows.items():
        lines = []
        for _ in range(count):
            target, parts, total = rng.uniform(*seconds), [], 0.0
            while total < target:
                pair = rng.choice(pairs)
                length = pair["_seconds"]
                if total + length >= seconds[1]:  # stay inside the encoder's window
                    break
                parts.append(pair)
                total += length
            lines.append(json.dumps(_joined(parts, index, out / "audio" / f"long{index:05d}.wav")))
            index += 1
        (out / "dpo" / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return out


@dataclass(frozen=True)
class RowLengths:
    """Mean LLM positions of a DPO row (audio tokens included) and how many of them are the answer."""

    prompt: float
    completion: float
    rows: int


def dpo_row_lengths(processor_dir: str | Path, manifest: str | Path, max_length: int) -> RowLengths:
    """Collate every pair of `manifest` with lalm's PreferenceCollator and the processor of
    `processor_dir` (a run's final/): the mean real positions per row, split at the first label."""
    from transformers import AutoProcessor

    from lalm.data.collators import CollatorConfig, PreferenceCollator
    from lalm.data.dataset import ManifestDataset

    processor = AutoProcessor.from_pretrained(processor_dir)
    dataset = ManifestDataset.from_manifest(str(manifest), "dpo")
    collator = PreferenceCollator(processor, CollatorConfig(max_length=max_length))
    positions = completion = rows = 0
    for start in range(0, len(dataset), 16):
        batch = collator([dataset[i] for i in range(start, min(start + 16, len(dataset)))])
        real = batch["attention_mask"].bool()
        positions += int(real.sum())
        completion += int((batch["labels"] != -100).sum())
        rows += int(real.any(-1).sum())
    if not rows:
        raise ValueError(f"{manifest}: no pair survived collation")
    return RowLengths((positions - completion) / rows, completion / rows, rows)
