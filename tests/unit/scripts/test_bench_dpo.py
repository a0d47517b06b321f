"""scripts/bench_dpo.py: the batches both sides get, the presets, and the whole benchmark on a micro model."""

from __future__ import annotations

import json
import math

import pytest
import torch

import scripts.bench_dpo as bench
from lalm.data.chat import audio_token_count
from scripts.bench_dpo import Shape, _check_same_start, _table, main, parse_args, select, step_flops
from scripts.bench_dpo_batches import Audio, Workload, add_audio, audio_token_id, lalm_batch, make_pairs
from scripts.bench_dpo_trl import EOS, _as_text, _word_tokenizer

MICRO = {"--hidden": 32, "--layers": 1, "--heads": 2, "--kv-heads": 1, "--intermediate": 64, "--vocab": 300}
ROWS = {
    "--pairs": 2,
    "--prompt": 5,
    "--completion": 3,
    "--long-pairs": 1,
    "--long-prompt": 6,
    "--long-completion": 4,
}


def test_lalm_batch_puts_chosen_rows_first_and_masks_the_prompt():
    prompt, chosen, rejected = (
        torch.tensor([[1, 2], [3, 4]]),
        torch.tensor([[5], [6]]),
        torch.tensor([[7], [8]]),
    )
    batch = lalm_batch(prompt, chosen, rejected)
    assert batch["input_ids"].tolist() == [[1, 2, 5], [3, 4, 6], [1, 2, 7], [3, 4, 8]]
    assert batch["labels"].tolist() == [[-100, -100, 5], [-100, -100, 6], [-100, -100, 7], [-100, -100, 8]]
    assert batch["attention_mask"].sum() == 12
    assert batch["num_pairs"] == 2
    assert batch["example_weights"].tolist() == [1.0, 1.0]


def test_audio_batch_carries_one_clip_per_pair_with_exactly_its_audio_tokens():
    generator = torch.Generator().manual_seed(0)
    prompt, chosen, rejected = (torch.randint(0, 98, (2, n), generator=generator) for n in (60, 3, 3))
    text = lalm_batch(prompt, chosen, rejected)
    batch = add_audio(text, Audio(2.0), 98, generator)

    frames = batch["feature_attention_mask"].sum(-1)
    assert frames.tolist() == [200, 200]  # 2 s of 10-ms mel frames
    assert batch["input_features"].shape == (2, 128, 204)  # trimmed_length: 200 + 2 up to a multiple of 4
    assert batch["feature_attention_mask"].shape == (2, 204)
    assert batch["audio_clip_index"].tolist() == [0, 1, 0, 1]  # chosen and rejected row i share clip i
    slots = batch["input_ids"] == 98
    per_row = audio_token_count(frames)[batch["audio_clip_index"]]
    assert slots.sum(-1).tolist() == per_row.tolist() == [50, 50, 50, 50]
    assert slots[:, 3:53].all()  # after the 3 text tokens, within the prompt
    assert torch.equal(batch["input_ids"][~slots], text["input_ids"][~slots])
    assert torch.equal(batch["labels"], text["labels"])  # audio sits in the prompt: never a target
    assert batch["input_ids"].shape == text["input_ids"].shape  # the LLM sees TRL's positions per row


def test_audio_sizes_up_to_the_30s_window_and_text_ids_never_hit_the_audio_id():
    assert (Audio(0.5).tokens, Audio(0.5).feature_frames, Audio(0.5).encoder_positions) == (12, 52, 25)
    assert (Audio(30).tokens, Audio(30).feature_frames, Audio(30).encoder_positions) == (750, 3000, 1500)
    data = make_pairs(Workload("short", 50, 20, 4), 2, vocab=6, seed=0)
    assert all(int((ids == audio_token_id(6)).sum()) == 0 for ids in data.values())
    assert data["chosen"][:, -1].eq(5).all() and data["prompt"].max() == 3


def test_presets_then_single_options():
    shape, workloads = select(
        parse_args(
            ["--shape", "qwen2-1.5b", "--layers", "2", "--workload-preset", "gpu", "--long-pairs", "4"]
        )
    )
    assert shape == Shape(hidden=1536, layers=2, heads=12, kv_heads=2, intermediate=8960, vocab=151936)
    rows = [(w.name, w.pairs, w.prompt, w.completion) for w in workloads]
    assert rows == [("short", 32, 90, 21), ("long", 4, 256, 256)]
    args = parse_args([])  # make bench: the CPU rows and the tiny shape
    assert (args.workload_preset, args.output, args.threads) == ("cpu", "outputs/bench/dpo_cpu.json", 2)
    assert [w.pairs for w in select(args)[1]] == [8, 2] and select(args)[0] == Shape()


def test_a_clip_that_does_not_fit_the_prompt_is_refused():
    with pytest.raises(SystemExit, match="100 audio tokens after 3 text tokens do not fit the short"):
        select(parse_args(["--audio-seconds", "4"]))  # 100 + 3 > 90 prompt tokens


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without a GPU")
def test_cuda_without_a_gpu_is_refused(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--device", "cuda"])
    assert "sees no CUDA GPU" in capsys.readouterr().err


def test_step_flops_add_the_frozen_encoder_to_lalm_only():
    workload = Workload("short", pairs=2, prompt=5, completion=3)  # 32 LLM positions per step
    assert step_flops(10, 100, workload, None) == {"lalm": 8 * 10 * 32, "trl": 8 * 10 * 32}
    # 2 s: 100 encoder positions per clip, one clip per pair, 2 N_enc each.
    assert step_flops(10, 100, workload, Audio(2.0)) == {"lalm": 2560 + 2 * 100 * 100 * 2, "trl": 2560}


def test_cuda_results_carry_mfu_and_gpu_memory(monkeypatch):
    """The parent's bookkeeping for --device cuda, on canned worker reports (no GPU needed)."""

    def side(seconds: list[float], encoder_params: int) -> dict:
        setup = {"digest": "same", "llm_params": 1000, "encoder_params": encoder_params}
        setup |= {"rss_after_imports_mb": 100.0, "reference_cache_s": 0.5, "gradient_checkpointing": True}
        steps = [{"seconds": s, "loss": math.log(2), "logps_chosen": -10.0} for s in seconds]
        final = {"peak_rss_mb": 200.0, "peak_gpu_allocated_mb": 1024.0, "peak_gpu_reserved_mb": 2048.0}
        return {"setup": setup, "steps": steps, "final": final}

    monkeypatch.setattr(
        bench.bench_dpo_workers,
        "run_lockstep",
        lambda spec: {"lalm": side([9, 1, 1], 50), "trl": side([9, 2, 2], 0)},
    )
    args = parse_args(["--warmup", "1", "--steps", "2", "--peak-tflops", "1e-6", "--audio-seconds", "2"])
    args.device = "cuda"  # past parse_args' check for a GPU
    run = bench.run_workload(args, Shape(), Workload("short", pairs=2, prompt=60, completion=3))

    # 8 N_llm x 252 positions (+ 2 N_enc x 100 encoder positions x 2 clips for lalm), at 1e6 FLOP/s peak.
    assert run["trl_mfu"] == pytest.approx(8 * 1000 * 252 / 2.0 / 1e6)
    assert run["lalm_mfu"] == pytest.approx((8 * 1000 * 252 + 2 * 50 * 100 * 2) / 1.0 / 1e6)
    assert run["lalm_peak_gpu_allocated_mb"] == 1024.0 and run["trl_peak_gpu_reserved_mb"] == 2048.0
    assert run["ratio_vs_trl"] == pytest.approx(2.0)
    table = _table({"short": run}, "cuda")
    assert "GPU MiB" in table and f"{run['lalm_mfu']:.1%}" in table


def test_trl_tokenizes_our_text_back_to_our_ids():
    tokenizer = _word_tokenizer(10)
    prompt, completion = torch.tensor([3, 0, 8]), torch.tensor([2, 9])
    ids = tokenizer(_as_text(prompt, 10) + " " + _as_text(completion, 10))["input_ids"]
    assert ids == [3, 0, 8, 2, 9]
    assert tokenizer.eos_token == EOS and tokenizer.eos_token_id == 9


def test_a_step0_loss_other_than_log2_fails():
    def run(loss: float) -> dict:
        step = {"loss": loss, "logps_chosen": -10.0}
        return {"setup": {"digest": "same"}, "steps": [step]}

    assert _check_same_start({"lalm": run(math.log(2)), "trl": run(math.log(2))})["trl_step0_loss"] > 0
    with pytest.raises(RuntimeError, match="not log 2"):
        _check_same_start({"lalm": run(math.log(2)), "trl": run(0.6)})


@pytest.mark.slow
def test_benchmark_writes_both_workloads_with_step0_at_log2(tmp_path):
    output = tmp_path / "dpo.json"
    argv = [str(x) for item in {**MICRO, **ROWS}.items() for x in item]
    result = main([*argv, "--warmup", "1", "--steps", "1", "--threads", "1", "--output", str(output)])

    written = json.loads(output.read_text())
    assert written == result
    assert written["shape"]["vocab"] == 300
    assert set(written["workloads"]) == {"short", "long"}
    assert written["ratio_vs_trl"] == written["workloads"]["short"]["ratio_vs_trl"]
    for name, pairs, prompt, completion in (("short", 2, 5, 3), ("long", 1, 6, 4)):
        run = written["workloads"][name]
        assert run["tokens_per_step"] == Workload(name, pairs, prompt, completion).tokens_per_step
        for side in ("lalm", "trl"):
            assert run[f"{side}_step0_loss"] == pytest.approx(math.log(2), abs=1e-5)
            assert run[f"{side}_step_s"] > 0
            assert run[f"{side}_tokens_per_s"] == pytest.approx(
                run["tokens_per_step"] / run[f"{side}_step_s"]
            )
            assert run[f"{side}_peak_rss_mb"] >= run[f"{side}_rss_after_imports_mb"] > 0
        assert run["ratio_vs_trl"] == pytest.approx(run["lalm_tokens_per_s"] / run["trl_tokens_per_s"])
        assert run["trl_gradient_checkpointing"] is True  # TRL 1.16's DPOConfig default


@pytest.mark.slow
def test_benchmark_with_audio_and_a_cached_reference(tmp_path):
    output = tmp_path / "dpo.json"
    rows = {"--pairs": 2, "--prompt": 60, "--completion": 3, "--workloads": "short"}
    argv = [str(x) for item in {**MICRO, **rows}.items() for x in item]
    audio = ["--audio-seconds", "2", "--encoder", "tiny", "--reference", "cached"]
    result = main([*argv, *audio, "--warmup", "1", "--steps", "1", "--threads", "1", "--output", str(output)])

    assert json.loads(output.read_text()) == result
    assert (result["lalm_reference"], result["audio_tokens_per_clip"], result["device"]) == (
        "cached",
        50,
        "cpu",
    )
    run = result["workloads"]["short"]
    assert run["tokens_per_step"] == 2 * 2 * 63  # LLM positions, audio tokens included, on both sides
    for side in ("lalm", "trl"):
        assert run[f"{side}_step0_loss"] == pytest.approx(math.log(2), abs=1e-5)
        assert f"{side}_mfu" not in run  # only on cuda
    # The clip replaced 50 prompt ids on lalm's side only, so the completions' log-probs differ.
    assert run["lalm_step0_logps_chosen"] != pytest.approx(run["trl_step0_logps_chosen"], rel=1e-4)
    assert run["lalm_flops_per_step"] - run["trl_flops_per_step"] == 2 * run["encoder_params"] * 100 * 2
    assert run["trl_flops_per_step"] == 8 * run["llm_params"] * run["tokens_per_step"]
    assert run["lalm_reference_cache_s"] > 0
