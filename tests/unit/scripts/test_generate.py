"""scripts/generate.py on the tiny model: one line per example of a manifest of each stage, in order,
with its reference; an example with bad audio is written with its reason, not lost; the same file on
two ranks as on one; ids seen twice are refused."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from lalm.config.eval import GenerateConfig
from lalm.data.dataset import ManifestDataset
from lalm.errors import ManifestError
from lalm.eval.batch_generation import run_generation
from lalm.eval.generation import ManifestPrompts
from tests.torchrun import cpu_env, torchrun_command
from tests.unit.scripts import ROOT, run_script

SCRIPT = str(ROOT / "scripts" / "generate.py")


def _env() -> dict[str, str]:
    return {
        "DS_ACCELERATOR": "cpu",
        "OMP_NUM_THREADS": "1",
        "PATH": os.environ["PATH"],
        "HOME": str(Path.home()),
    }


def _records(corpus_dir: Path, kind: str, n: int) -> list[dict]:
    """The first n test records of a stage, audio paths made absolute so they can be written elsewhere."""
    folder = corpus_dir / kind
    records = [json.loads(line) for line in (folder / "test.jsonl").read_text().splitlines()[:n]]

    def fix(item: dict) -> dict:
        if item.get("type") != "audio":
            return item
        audio = item["audio"]
        path = audio["path"] if isinstance(audio, dict) else audio
        return {
            **item,
            "audio": {**(audio if isinstance(audio, dict) else {}), "path": str((folder / path).resolve())},
        }

    for record in records:
        if "audio" in record:
            record["audio"] = fix({"type": "audio", "audio": record["audio"]})["audio"]
        for turns in (record.get("messages"), record.get("prompt")):
            for message in turns or []:
                if isinstance(message["content"], list):
                    message["content"] = [fix(item) for item in message["content"]]
    return records


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_pretrain_manifest_with_a_bad_clip(corpus_dir, tiny_checkpoint, tmp_path):
    records = _records(corpus_dir, "pretrain", 5)
    (tmp_path / "notes.wav").write_text("not audio\n")
    records[2]["audio"] = {"path": str(tmp_path / "notes.wav")}
    manifest = _write(tmp_path / "pre.jsonl", records)
    out = tmp_path / "out" / "pre.jsonl"
    result = run_script(
        "generate.py",
        f"checkpoint={tiny_checkpoint}",
        f"manifest={manifest}",
        f"output={out}",
        "batch_size=2",
        "generation.max_new_tokens=6",
        env=_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary == {
        "output": str(out),
        "kind": "pretrain",
        "examples": 5,
        "generated": 4,
        "dropped": {"unreadable_audio": 1},
    }
    lines = _lines(out)
    assert [line["id"] for line in lines] == [r["id"] for r in records]
    assert [line["source"] for line in lines] == [f"{manifest}:{i}" for i in range(1, 6)]
    assert [line["task"] for line in lines] == [r["task"] for r in records]
    assert [line["reference"] for line in lines] == [r["text"] for r in records]
    bad = lines[2]
    assert bad["prediction"] is None and bad["drop_reason"] == "unreadable_audio"
    assert bad["drop_file"] == str(tmp_path / "notes.wav") and bad["drop_detail"]
    good = [line for i, line in enumerate(lines) if i != 2]
    assert all(isinstance(line["prediction"], str) and "drop_reason" not in line for line in good)
    assert any(line["prediction"] for line in good)


def test_sft_and_dpo_manifests(corpus_dir, tiny_checkpoint, tmp_path):
    sft = _records(corpus_dir, "sft", 4)
    dpo = _records(corpus_dir, "dpo", 3)
    for kind, records in (("sft", sft), ("dpo", dpo)):
        cfg = GenerateConfig(
            checkpoint=str(tiny_checkpoint),
            manifest=str(_write(tmp_path / f"{kind}.jsonl", records)),
            output=str(tmp_path / f"{kind}.out.jsonl"),
        )
        cfg.generation.max_new_tokens = 4
        summary = run_generation(cfg)
        assert summary["kind"] == kind and summary["generated"] == len(records) and not summary["dropped"]
        lines = _lines(Path(cfg.output))
        assert [line["id"] for line in lines] == [r["id"] for r in records]
        assert all(isinstance(line["prediction"], str) for line in lines)
        if kind == "sft":
            assert [line["mode"] for line in lines] == [r["mode"] for r in sft]
            assert all(line["task"] == "chat" for line in lines)
            last = sft[0]["messages"][-1]["content"]
            assert lines[0]["reference"] == (last if isinstance(last, str) else last[0]["text"])
        else:
            assert [(line["reference"], line["rejected"]) for line in lines] == [
                (r["chosen"], r["rejected"]) for r in dpo
            ]
            assert [line["task"] for line in lines] == [r.get("task") for r in dpo]


def test_prompts_end_at_the_last_user_turn(corpus_dir, tmp_path):
    multi = next(r for r in _records(corpus_dir, "sft", 40) if len(r["messages"]) >= 4)
    sft = ManifestDataset.from_manifest(str(_write(tmp_path / "sft.jsonl", [multi])), "sft")
    prompt = ManifestPrompts(sft, [0])[0]
    assert [m["role"] for m in prompt["messages"]] == ["user", "assistant", "user"][
        : len(multi["messages"]) - 1
    ]
    assert prompt["source"] == f"{tmp_path / 'sft.jsonl'}:1"
    pair = _records(corpus_dir, "dpo", 1)[0]
    dpo = ManifestDataset.from_manifest(str(_write(tmp_path / "dpo.jsonl", [pair])), "dpo")
    messages = ManifestPrompts(dpo, [0])[0]["messages"]
    assert [m["role"] for m in messages] == [m["role"] for m in pair["prompt"]]
    assert messages[-1]["role"] == "user"


def test_two_ranks_write_what_one_writes(corpus_dir, tiny_checkpoint, tmp_path):
    manifest = _write(tmp_path / "sft.jsonl", _records(corpus_dir, "sft", 7))
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    cfg = GenerateConfig(
        checkpoint=str(tiny_checkpoint), manifest=str(manifest), output=str(one), batch_size=2
    )
    cfg.generation.max_new_tokens = 5
    run_generation(cfg)
    overrides = [f"checkpoint={tiny_checkpoint}", f"manifest={manifest}", f"output={two}", "batch_size=2"]
    command = torchrun_command(2, SCRIPT, *overrides, "generation.max_new_tokens=5")
    result = subprocess.run(command, capture_output=True, text=True, env=cpu_env(), timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(_lines(two)) == 7
    assert two.read_text() == one.read_text()  # each rank generated its share; rank 0 wrote them all


def test_repeated_id_and_missing_checkpoint_are_refused(corpus_dir, tiny_checkpoint, tmp_path):
    records = _records(corpus_dir, "pretrain", 3)
    records[2]["id"] = records[0]["id"]
    out = tmp_path / "dup.out.jsonl"
    cfg = GenerateConfig(
        checkpoint=str(tmp_path / "nowhere"),
        manifest=str(_write(tmp_path / "dup.jsonl", records)),
        output=str(out),
    )
    # Checked before the (missing) checkpoint is loaded.
    with pytest.raises(ManifestError, match=f"dup.jsonl:3: id '{records[0]['id']}' repeats .*dup.jsonl:1's"):
        run_generation(cfg)
    cfg.manifest = str(_write(tmp_path / "ok.jsonl", records[:2]))
    with pytest.raises(FileNotFoundError, match="nowhere.*not a model checkpoint"):
        run_generation(cfg)
    assert not out.exists()


def test_missing_manifest_exits_78(tiny_checkpoint, tmp_path):
    result = run_script(
        "generate.py",
        f"checkpoint={tiny_checkpoint}",
        f"manifest={tmp_path / 'nowhere.jsonl'}",
        f"output={tmp_path / 'o.jsonl'}",
        env=_env(),
    )
    assert result.returncode == 78 and "nowhere.jsonl" in result.stderr
