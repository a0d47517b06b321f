"""ManifestDataset: decoding, pretrain prompts from the library, errors that name the manifest line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lalm.data.audio import write_audio
from lalm.data.dataset import ManifestDataset, pretrain_messages
from lalm.data.prompts import PROMPTS
from lalm.errors import AudioLoadError


def _manifest(tmp_path, records):
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_pretrain_record_becomes_audio_then_instruction(tmp_path):
    write_audio(tmp_path / "a.wav", np.zeros(8000, np.float32))
    record = {"id": "x1", "audio": "a.wav", "task": "asr", "language": "fr", "text": "Bonjour."}
    dataset = ManifestDataset.from_manifest(_manifest(tmp_path, [record]), "pretrain", prompt_seed=7)
    example = dataset[0]
    user, assistant = example["messages"]
    assert [item["type"] for item in user["content"]] == ["audio", "text"]
    assert user["content"][0]["waveform"].shape == (8000,)
    instruction = user["content"][1]["text"]
    assert instruction in {p.format(language="French") for p in PROMPTS["asr"]["en"]} | {
        p.format(language="法语") for p in PROMPTS["asr"]["zh"]
    }
    assert assistant["content"] == [{"type": "text", "text": "Bonjour."}]
    # Same seed and id: same instruction, in a fresh dataset too; another seed moves some ids.
    again = ManifestDataset.from_manifest(_manifest(tmp_path, [record]), "pretrain", prompt_seed=7)
    assert again[0]["messages"][0]["content"][1]["text"] == instruction
    records = [{**record, "id": f"x{i}"} for i in range(30)]
    seven = [pretrain_messages(r, 7)[0]["content"][1]["text"] for r in records]
    eight = [pretrain_messages(r, 8)[0]["content"][1]["text"] for r in records]
    assert seven != eight and len(set(seven)) > 10


def test_record_prompt_and_prompt_language_are_honoured(tmp_path):
    base = {
        "id": "g",
        "audio": {"path": "a", "offset": 0.0, "duration": None},
        "task": "gender",
        "language": None,
        "target_language": None,
        "text": "女性",
    }
    zh = pretrain_messages({**base, "prompt": None, "prompt_language": "zh"}, 0)[0]["content"][1]["text"]
    assert zh in PROMPTS["gender"]["zh"]
    own = pretrain_messages({**base, "prompt": "Man or woman?", "prompt_language": None}, 0)
    assert own[0]["content"][1]["text"] == "Man or woman?"


def test_unreadable_audio_names_the_manifest_line(tmp_path):
    write_audio(tmp_path / "good.wav", np.zeros(1600, np.float32))
    (tmp_path / "bad.wav").write_bytes(b"this is not a wav file")
    records = [
        {
            "id": "ok",
            "mode": "chat",
            "messages": [
                {"role": "user", "content": [{"type": "audio", "audio": "good.wav"}]},
                {"role": "assistant", "content": "Fine."},
            ],
        },
        {
            "id": "broken",
            "mode": "chat",
            "messages": [
                {"role": "user", "content": [{"type": "audio", "audio": "bad.wav"}]},
                {"role": "assistant", "content": "Fine."},
            ],
        },
    ]
    dataset = ManifestDataset.from_manifest(_manifest(tmp_path, records), "sft")
    assert dataset[0]["mode"] == "chat"
    with pytest.raises(AudioLoadError) as err:
        dataset[1]
    assert "m.jsonl:2" in str(err.value) and "bad.wav" in str(err.value)


def test_dpo_example_keeps_prompt_and_both_responses(corpus_dir):
    dataset = ManifestDataset.from_manifest(str(corpus_dir / "dpo" / "dev.jsonl"), "dpo")
    example = dataset[0]
    assert example["prompt"][-1]["role"] == "user"
    assert example["chosen"] != example["rejected"]
    waves = [i["waveform"] for m in example["prompt"] for i in m["content"] if i["type"] == "audio"]
    assert waves and all(w.dtype == np.float32 and w.ndim == 1 for w in waves)
