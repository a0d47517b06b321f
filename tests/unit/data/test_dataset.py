"""ManifestDataset: decoding, pretrain prompts from the library, bad-audio markers naming the manifest line."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf
import torch

from lalm.data.audio import write_audio
from lalm.data.dataset import ManifestDataset, pretrain_messages
from lalm.data.prompt_texts import PROMPTS


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


def _sft_record(example_id: str, audio: str | dict) -> dict:
    return {
        "id": example_id,
        "mode": "chat",
        "messages": [
            {"role": "user", "content": [{"type": "audio", "audio": audio}]},
            {"role": "assistant", "content": "Fine."},
        ],
    }


def test_unreadable_audio_becomes_a_marker_naming_the_manifest_line(tmp_path):
    write_audio(tmp_path / "good.wav", np.zeros(1600, np.float32))
    (tmp_path / "bad.wav").write_bytes(b"this is not a wav file")
    records = [_sft_record("ok", "good.wav"), _sft_record("broken", "bad.wav")]
    manifest = _manifest(tmp_path, records)
    dataset = ManifestDataset.from_manifest(manifest, "sft")
    assert dataset[0]["mode"] == "chat"
    marker = dataset[1]
    assert set(marker) == {"id", "source", "bad"}
    assert marker["id"] == "broken" and marker["source"] == f"{manifest}:2"
    bad = marker["bad"]
    assert bad["reason"] == "unreadable_audio" and bad["file"] == str(tmp_path / "bad.wav")
    assert bad["detail"].startswith("unreadable (") and "m.jsonl" not in bad["detail"]


def _planted(tmp_path) -> tuple[str, dict[str, str]]:
    """A pretrain manifest with one good clip and one of each bad kind; {id: expected reason}."""
    rng = np.random.default_rng(0)
    write_audio(tmp_path / "good.wav", 0.1 * rng.standard_normal(16_000))
    (tmp_path / "zero.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("not audio\n")
    whole = (tmp_path / "good.wav").read_bytes()
    (tmp_path / "chopped.wav").write_bytes(whole[: len(whole) // 2])
    nan = 0.1 * rng.standard_normal(16_000)
    nan[100] = np.nan
    sf.write(str(tmp_path / "nan.wav"), nan, 16_000, subtype="FLOAT")
    write_audio(tmp_path / "gone.wav", np.zeros(1600))
    clips = {
        "good": ("good.wav", None),
        "zero": ("zero.wav", "empty_audio"),
        "text": ("text.wav", "unreadable_audio"),
        "chopped": ("chopped.wav", "truncated_audio"),
        "nan": ("nan.wav", "nonfinite_audio"),
        "shorter": ({"path": "good.wav", "duration": 1.5}, "duration_mismatch"),
        "gone": ("gone.wav", "missing_audio"),
    }
    records = [
        {"id": key, "audio": audio, "task": "asr", "language": "en", "text": "Hello."}
        for key, (audio, _) in clips.items()
    ]
    return _manifest(tmp_path, records), {key: reason for key, (_, reason) in clips.items()}


def test_every_bad_kind_is_a_marker_never_an_error(tmp_path):
    manifest, expected = _planted(tmp_path)
    dataset = ManifestDataset.from_manifest(manifest, "pretrain")
    (tmp_path / "gone.wav").unlink()  # the manifest was valid; the file went away before training read it
    for index, (key, reason) in enumerate(expected.items()):
        example = dataset[index]
        if reason is None:
            assert "bad" not in example and example["messages"][0]["content"][0]["waveform"].shape == (
                16_000,
            )
            continue
        assert example["id"] == key and example["source"] == f"{manifest}:{index + 1}"
        assert example["bad"]["reason"] == reason, example["bad"]
        path = example["bad"]["file"]
        assert path == str(tmp_path / (f"{key}.wav" if key != "shorter" else "good.wav"))


def test_duration_tolerance_is_a_constructor_argument(tmp_path):
    manifest, _ = _planted(tmp_path)
    shorter = 5  # the 1-s file whose manifest says 1.5 s
    assert (
        ManifestDataset.from_manifest(manifest, "pretrain")[shorter]["bad"]["reason"] == "duration_mismatch"
    )
    lenient = ManifestDataset.from_manifest(manifest, "pretrain", duration_tolerance_s=0.6)
    assert lenient.duration_tolerance_s == 0.6
    assert lenient[shorter]["messages"][0]["content"][0]["waveform"].shape == (16_000,)
    assert "bad" not in ManifestDataset(lenient.records, "pretrain", duration_tolerance_s=None)[shorter]


def test_markers_come_back_from_dataloader_workers(tmp_path):
    manifest, expected = _planted(tmp_path)
    dataset = ManifestDataset.from_manifest(manifest, "pretrain")
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=1, collate_fn=list)
    examples = [example for batch in loader for example in batch]
    reasons = {ex["id"]: ex["bad"]["reason"] if "bad" in ex else None for ex in examples}
    assert reasons == {**expected, "gone": None}  # still there: the worker read it


def test_dpo_example_keeps_prompt_and_both_responses(corpus_dir):
    dataset = ManifestDataset.from_manifest(str(corpus_dir / "dpo" / "dev.jsonl"), "dpo")
    example = dataset[0]
    assert example["prompt"][-1]["role"] == "user"
    assert example["chosen"] != example["rejected"]
    waves = [i["waveform"] for m in example["prompt"] for i in m["content"] if i["type"] == "audio"]
    assert waves and all(w.dtype == np.float32 and w.ndim == 1 for w in waves)
