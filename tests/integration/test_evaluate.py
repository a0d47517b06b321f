"""scripts/evaluate.py end to end on the tiny model, the optional judge, its bad-input errors, and bad
clips that are skipped and counted instead."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest

from lalm.config.eval import EvalConfig, JudgeConfig
from lalm.data.audio import write_audio
from lalm.errors import ManifestError
from lalm.eval.judge import judge_chat
from lalm.eval.runner import run_evaluation
from lalm.models.builders import build_tiny
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoint(corpus_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_ckpt")
    model, processor = build_tiny(tiny_config(corpus_dir))
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def test_script_writes_metrics_table_and_predictions(corpus_dir, checkpoint, tmp_path):
    manifests = f"[{corpus_dir}/pretrain/test.jsonl,{corpus_dir}/sft/test.jsonl,{corpus_dir}/dpo/test.jsonl]"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "evaluate.py"),
            f"checkpoint={checkpoint}",
            f"manifests={manifests}",
            f"output_dir={tmp_path}",
            f"reference={checkpoint}",
            "max_examples=12",
            "generation.max_new_tokens=8",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={"DS_ACCELERATOR": "cpu", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "chat judge skipped" in result.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    sizes = {
        kind: min(12, len((corpus_dir / kind / "test.jsonl").read_text().splitlines()))
        for kind in ("pretrain", "sft", "dpo")
    }
    assert metrics["preference/n"] == sizes["dpo"] and metrics["preference/dropped"] == 0
    # The policy is its own reference: every reward is 0, so no pair is preferred and the margin is 0.
    assert metrics["preference/accuracy"] == 0.0 and metrics["preference/margin"] == 0.0
    # Per pair task (the recipe's DPO records name theirs): the counts add up to all pairs.
    per_task = {
        k.split("/")[1]: v
        for k, v in metrics.items()
        if k.startswith("preference/") and k.count("/") == 2 and k.endswith("/n")
    }
    assert set(per_task) <= {"chat", "asr", "lid"} and per_task and sum(per_task.values()) == sizes["dpo"]
    pairs = [json.loads(line) for line in (tmp_path / "preferences.jsonl").read_text().splitlines()]
    assert len(pairs) == sizes["dpo"] and all(p["rewards/chosen"] == 0.0 for p in pairs)
    assert metrics["chat/n"] == sizes["sft"] and 0.0 <= metrics["chat/exact_match"] <= 1.0
    asr = [k for k in metrics if k.startswith("asr/") and k.endswith(("/wer", "/cer"))]
    assert asr and all(metrics[k] >= 0.0 for k in asr)
    predictions = (tmp_path / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == sizes["pretrain"] + sizes["sft"]
    assert "| metric | value |" in (tmp_path / "metrics.md").read_text()


def test_unknown_task_empty_manifest_and_missing_processor(corpus_dir, checkpoint, tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = json.loads((corpus_dir / "pretrain" / "test.jsonl").read_text().splitlines()[0])
    good["audio"]["path"] = str((corpus_dir / "pretrain" / good["audio"]["path"]).resolve())
    bad.write_text(json.dumps(good) + "\n" + json.dumps({**good, "task": "karaoke"}) + "\n")
    with pytest.raises(ManifestError, match=r"bad.jsonl:2: unknown task 'karaoke'"):
        run_evaluation(EvalConfig(checkpoint=str(checkpoint), manifests=[str(bad)], output_dir=str(tmp_path)))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ManifestError, match="no examples"):
        run_evaluation(
            EvalConfig(checkpoint=str(checkpoint), manifests=[str(empty)], output_dir=str(tmp_path))
        )
    no_processor = tmp_path / "model_only"
    build_tiny(tiny_config(corpus_dir))[0].save_pretrained(no_processor)
    with pytest.raises(FileNotFoundError, match="processor"):
        run_evaluation(
            EvalConfig(checkpoint=str(no_processor), manifests=[str(bad)], output_dir=str(tmp_path))
        )


def test_tasks_filter_generates_only_those_tasks(corpus_dir, checkpoint, tmp_path):
    manifest = corpus_dir / "pretrain" / "test.jsonl"
    records = [json.loads(line) for line in manifest.read_text().splitlines()][:40]
    cfg = EvalConfig(
        checkpoint=str(checkpoint), manifests=[str(manifest)], output_dir=str(tmp_path), max_examples=40
    )
    cfg.tasks, cfg.generation.max_new_tokens = ["lid", "gender"], 4
    run_evaluation(cfg)
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in records if r["task"] in ("lid", "gender")]
    assert rows  # the test corpus has both tasks in its first 40 records
    cfg.tasks = ["karaoke"]
    with pytest.raises(ValueError, match=r"tasks=\['karaoke'\] are not tasks"):
        run_evaluation(cfg)


def test_judge_uses_an_openai_compatible_endpoint():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            body = json.dumps({"choices": [{"message": {"content": "Score: 7"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.handle_request, daemon=True).start()
    items = [{"id": "c1", "reference": "Seven.", "prediction": "It is seven."}]
    scores = judge_chat(
        items, JudgeConfig(endpoint=f"http://127.0.0.1:{server.server_port}/v1", model="judge")
    )
    server.server_close()
    assert scores == {"chat/judge_score": 7.0, "chat/judged": 1}
    assert seen[0]["model"] == "judge" and "It is seven." in seen[0]["messages"][0]["content"]
    assert judge_chat(items, JudgeConfig()) == {}


def _absolute(record: dict, folder: Path) -> dict:
    """The record with its audio paths made absolute, so that it can be written to another folder."""

    def fix(ref: dict) -> dict:
        return {**ref, "path": str((folder / ref["path"]).resolve())}

    if "audio" in record:
        return {**record, "audio": fix(record["audio"])}
    prompt = [
        {
            **m,
            "content": [{**i, "audio": fix(i["audio"])} if i["type"] == "audio" else i for i in m["content"]],
        }
        for m in record["prompt"]
    ]
    return {**record, "prompt": prompt}


def _first(corpus_dir: Path, kind: str, n: int) -> list[dict]:
    lines = (corpus_dir / kind / "test.jsonl").read_text().splitlines()[:n]
    return [_absolute(json.loads(line), corpus_dir / kind) for line in lines]


def test_bad_clips_are_skipped_counted_and_named(corpus_dir, checkpoint, tmp_path):
    """Broken files in eval manifests: the run completes; unusable audio is left out of the scores and
    counted by reason and named in bad_examples.jsonl. A clip longer than the encoder's window is no
    longer one of them: it is cut into windows and scored (lalm.data.features)."""
    (tmp_path / "zero.wav").write_bytes(b"")
    whole = Path(_first(corpus_dir, "pretrain", 1)[0]["audio"]["path"]).read_bytes()
    (tmp_path / "chopped.wav").write_bytes(whole[: len(whole) // 2])
    write_audio(tmp_path / "long.wav", np.zeros(7 * 16_000))  # the tiny model's window is 6 s: 2 windows
    (tmp_path / "text.wav").write_text("not audio\n")
    pretrain = _first(corpus_dir, "pretrain", 6)
    # Tiny durations sort these two first (by length): together they are one all-dropped batch of 2.
    pretrain[2]["audio"] = {"path": str(tmp_path / "zero.wav"), "duration": 0.01}
    pretrain[4]["audio"] = {"path": str(tmp_path / "chopped.wav"), "duration": 0.02}
    pretrain[5]["audio"] = {"path": str(tmp_path / "long.wav")}
    dpo = _first(corpus_dir, "dpo", 4)
    dpo[1]["prompt"][0]["content"][0]["audio"] = {"path": str(tmp_path / "text.wav")}
    for name, records in (("pre.jsonl", pretrain), ("dpo.jsonl", dpo)):
        (tmp_path / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    out = tmp_path / "eval"
    cfg = EvalConfig(
        checkpoint=str(checkpoint),
        manifests=[str(tmp_path / "pre.jsonl"), str(tmp_path / "dpo.jsonl")],
        output_dir=str(out),
        reference=str(checkpoint),
        batch_size=2,
    )
    cfg.generation.max_new_tokens = 4
    metrics = run_evaluation(cfg)

    assert metrics["generation/dropped"] == 2
    assert (
        metrics["generation/dropped/empty_audio"] == 1 and metrics["generation/dropped/truncated_audio"] == 1
    )
    assert metrics["preference/dropped"] == 1 and metrics["preference/dropped/unreadable_audio"] == 1
    assert metrics["preference/n"] == 3
    scored = sum(v for k, v in metrics.items() if k.endswith("/n") and not k.startswith("preference"))
    assert scored == 4  # 6 examples, 2 with unusable audio left out; the 7-s one scored like the rest
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["drop_reason"] for r in rows] == [
        None,
        None,
        "empty_audio",
        None,
        "truncated_audio",
        None,
    ]
    assert [r["dropped"] for r in rows] == [False, False, True, False, True, False]
    bad = {b["id"]: b for b in map(json.loads, (out / "bad_examples.jsonl").read_text().splitlines())}
    assert set(bad) == {pretrain[i]["id"] for i in (2, 4)} | {dpo[1]["id"]}
    assert bad[pretrain[4]["id"]]["source"] == f"{tmp_path / 'pre.jsonl'}:5"
    assert bad[pretrain[4]["id"]]["file"] == str(tmp_path / "chopped.wav")
    assert bad[dpo[1]["id"]]["source"] == f"{tmp_path / 'dpo.jsonl'}:2"
    assert all(b["detail"] for b in bad.values())


def test_clips_longer_than_the_window_are_evaluated(corpus_dir, checkpoint, tmp_path):
    """A manifest of clips 2.4 windows long (14.5 s; the tiny model's window is 6 s): generation and
    preference scoring both run on them, nothing is dropped."""
    rng = np.random.default_rng(0)
    pretrain, dpo = _first(corpus_dir, "pretrain", 2), _first(corpus_dir, "dpo", 2)
    for i, record in enumerate(pretrain):
        write_audio(tmp_path / f"long{i}.wav", 0.1 * rng.standard_normal(int(14.5 * 16_000)))
        record["audio"] = {"path": str(tmp_path / f"long{i}.wav"), "duration": 14.5}
    for i, record in enumerate(dpo):
        record["prompt"][0]["content"][0]["audio"] = {"path": str(tmp_path / f"long{i}.wav")}
    for name, records in (("pre.jsonl", pretrain), ("dpo.jsonl", dpo)):
        (tmp_path / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    out = tmp_path / "eval"
    cfg = EvalConfig(
        checkpoint=str(checkpoint),
        manifests=[str(tmp_path / "pre.jsonl"), str(tmp_path / "dpo.jsonl")],
        output_dir=str(out),
        reference=str(checkpoint),
        batch_size=2,
    )
    cfg.generation.max_new_tokens = 4
    metrics = run_evaluation(cfg)

    assert metrics["generation/dropped"] == 0 and metrics["preference/dropped"] == 0
    assert metrics["preference/n"] == 2
    scored = sum(v for k, v in metrics.items() if k.endswith("/n") and not k.startswith("preference"))
    assert scored == 2
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["dropped"] for r in rows] == [False, False]
    assert (out / "bad_examples.jsonl").read_text() == ""
