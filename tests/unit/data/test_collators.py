"""Collators against transformers' Qwen2AudioProcessor, and label masks by example."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lalm.data.collators import (
    DROP_REASONS,
    IGNORE_INDEX,
    CollatorConfig,
    ConversationCollator,
    GenerationCollator,
    PreferenceCollator,
    model_inputs,
    placeholder_rows,
    real_ids,
    real_token_count,
)
from lalm.data.dataset import ManifestDataset

SR = 16_000


def _wave(seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _hf_conversation(messages):
    """Our decoded messages in the form transformers' chat template takes."""
    out = []
    for message in messages:
        items = [
            {"type": "audio", "audio_url": "clip"}
            if item["type"] == "audio"
            else {"type": "text", "text": item["text"]}
            for item in message["content"]
        ]
        if message["role"] == "assistant":
            items = "".join(item["text"] for item in items)
        out.append({"role": message["role"], "content": items})
    return out


def _processor_reference(processor, messages):
    text = processor.tokenizer.apply_chat_template(_hf_conversation(messages), tokenize=False)
    waves = [item["waveform"] for m in messages for item in m["content"] if item["type"] == "audio"]
    return processor(text=[text], audio=waves, sampling_rate=SR, return_tensors="pt")


def _supervised_segments(tokenizer, input_ids, labels) -> list[str]:
    """Decoded runs of consecutive supervised tokens."""
    segments, current = [], []
    for token, label in zip(input_ids.tolist(), labels.tolist(), strict=True):
        if label != IGNORE_INDEX:
            assert label == token
            current.append(token)
        elif current:
            segments.append(tokenizer.decode(current))
            current = []
    if current:
        segments.append(tokenizer.decode(current))
    return segments


@pytest.mark.parametrize("stage", ["pretrain", "sft"])
def test_input_ids_and_features_equal_the_processor(corpus_dir, processor, stage):
    dataset = ManifestDataset.from_manifest(str(corpus_dir / stage / "train.jsonl"), stage)
    examples = [dataset[i] for i in range(12)]
    assert (
        any(sum(m["role"] == "assistant" for m in ex["messages"]) > 1 for ex in examples)
        or stage == "pretrain"
    )
    batch = ConversationCollator(processor, CollatorConfig(trim_audio=False))(examples)
    trimmed = ConversationCollator(processor)(examples)
    frames = trimmed["input_features"].shape[-1]
    assert batch["dropped"] == [] and frames < batch["input_features"].shape[-1]
    assert torch.equal(trimmed["input_features"], batch["input_features"][..., :frames])  # a prefix
    assert int(trimmed["feature_attention_mask"].sum()) == int(batch["feature_attention_mask"].sum())
    clip = 0
    for row, example in enumerate(examples):
        reference = _processor_reference(processor, example["messages"])
        n = int(batch["attention_mask"][row].sum())
        assert batch["input_ids"][row, :n].tolist() == reference["input_ids"][0].tolist()
        clips = len(reference["input_features"])
        assert torch.equal(
            batch["feature_attention_mask"][clip : clip + clips], reference["feature_attention_mask"].long()
        )
        torch.testing.assert_close(batch["input_features"][clip : clip + clips], reference["input_features"])
        clip += clips
    assert clip == len(batch["input_features"]) == len(batch["audio_clip_index"])


def test_audio_token_count_is_25_per_second(processor):
    collator = ConversationCollator(processor)
    assert collator._token_counts([_wave(1.0), _wave(2.0), _wave(6.0)]) == [25, 50, 150]
    # Past the 6-s window: the windows' tokens summed (6 s + 0.01 s: 150 + 0, one mel frame gives none).
    assert collator._token_counts([_wave(6.01), _wave(6.04), _wave(13.0)]) == [150, 151, 325]


def _example(example_id, turns, clips_per_turn=1):
    messages = []
    for question, answer in turns:
        audio = [
            {"type": "audio", "waveform": _wave(0.8 + 0.1 * len(messages))} for _ in range(clips_per_turn)
        ]
        messages.append({"role": "user", "content": [*audio, {"type": "text", "text": question}]})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return {"id": example_id, "source": f"test:{example_id}", "messages": messages}


def test_labels_cover_exactly_the_assistant_turns(processor):
    single = _example("a", [("What is said?", "Anna goes to the market on Monday.")])
    multi = _example(
        "b", [("Which language?", "French"), ("Translate it into Chinese.", "安娜星期一去市场。")], 2
    )
    batch = ConversationCollator(processor)([single, multi])
    tokenizer = processor.tokenizer
    segments = [_supervised_segments(tokenizer, batch["input_ids"][r], batch["labels"][r]) for r in range(2)]
    assert segments[0] == ["Anna goes to the market on Monday.<|im_end|>"]
    assert segments[1] == ["French<|im_end|>", "安娜星期一去市场。<|im_end|>"]
    audio_id = processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>")
    assert not (batch["labels"][batch["input_ids"] == audio_id] != IGNORE_INDEX).any()
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()
    # 1 clip for the single-turn example, 4 for the two-turn one, in order of appearance.
    assert batch["input_features"].shape[0] == 5
    assert int((batch["input_ids"] == audio_id).sum()) == sum(
        (m.sum().item() - 1) // 2 // 2 + 1 for m in batch["feature_attention_mask"]
    )


def test_too_long_examples_are_dropped_and_counted_never_cut(processor):
    short = _example("short", [("Hi?", "Hello.")])
    long_text = _example("long_text", [("Hi?", "word " * 400)])
    long_audio = {
        "id": "long_audio",
        "source": "m.jsonl:9",
        "messages": [
            {"role": "user", "content": [{"type": "audio", "waveform": _wave(7.0)}]},
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        ],
    }
    config = CollatorConfig(max_length=200, max_audio_seconds=6.5)
    batch = ConversationCollator(processor, config)([short, long_text, long_audio])
    assert batch["ids"] == ["short"]
    assert batch["input_ids"].shape[0] == 1 and batch["input_features"].shape[0] == 1
    long_text_tokens = len(processor.tokenizer("word " * 400)["input_ids"])
    assert batch["dropped"] == [
        {
            "id": "long_text",
            "source": "test:long_text",
            "reason": "longer_than_max_length",
            "file": None,
            "detail": batch["dropped"][0]["detail"],
        },
        {
            "id": "long_audio",
            "source": "m.jsonl:9",
            "reason": "audio_longer_than_max_audio_seconds",
            "file": None,  # a clip made here, not read from a file
            "detail": "a 7.00-s clip; max_audio_seconds is 6.5",
        },
    ]
    tokens = int(batch["dropped"][0]["detail"].split()[0])
    assert tokens > max(200, long_text_tokens) and batch["dropped"][0]["detail"].endswith("max_length is 200")


def _text_only(example_id: str, answer: str = "Hi.") -> dict:
    return {
        "id": example_id,
        "source": f"test:{example_id}",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Say hi."}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ],
    }


def _marker(example_id: str, reason: str = "truncated_audio") -> dict:
    """What ManifestDataset returns for an example whose audio cannot be used."""
    bad = {"reason": reason, "file": f"/data/{example_id}.wav", "detail": "cut off"}
    return {"id": example_id, "source": f"m.jsonl:{example_id}", "bad": bad}


def test_text_only_batch_gets_a_silent_weight_0_placeholder(processor):
    batch = ConversationCollator(processor)([_text_only("t"), _text_only("u", "Hello there.")])
    assert (
        batch["ids"] == ["t", "u", "<placeholder>"] and batch["placeholders"] == 1 and batch["dropped"] == []
    )
    assert real_ids(batch) == ["t", "u"]
    assert batch["input_ids"].shape[0] == 3 and batch["example_weights"].tolist() == [1.0, 1.0, 0.0]
    assert batch["tasks"] == [None, None, None]
    # One clip, 0.1 s of silence, filling the placeholder row's one audio span.
    assert batch["input_features"].shape[0] == 1 and batch["audio_clip_index"].tolist() == [0]
    assert int(batch["feature_attention_mask"].sum()) == 10  # mel frames of 1,600 samples
    audio_id = processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>")
    assert (
        int((batch["input_ids"][2] == audio_id).sum()) == 2
        and int((batch["input_ids"][:2] == audio_id).sum()) == 0
    )
    assert (batch["labels"][2] == IGNORE_INDEX).all()  # nothing of it is supervised
    assert _supervised_segments(processor.tokenizer, batch["input_ids"][0], batch["labels"][0]) == [
        "Hi.<|im_end|>"
    ]
    assert placeholder_rows(batch).tolist() == [False, False, True]
    assert batch["placeholder_tokens"] == int(batch["attention_mask"][2].sum()) > 0
    assert (
        real_token_count(batch) == int(batch["attention_mask"][:2].sum()) < int(batch["attention_mask"].sum())
    )
    # With a clip in the batch there is no placeholder.
    mixed = ConversationCollator(processor)([_text_only("t"), _example("a", [("What?", "Hello.")])])
    assert mixed["placeholders"] == 0 and mixed["input_ids"].shape[0] == 2
    assert real_token_count(mixed) == int(mixed["attention_mask"].sum())
    assert mixed["placeholder_tokens"] == 0


def test_bad_markers_are_dropped_and_reported_with_file_and_detail(processor):
    examples = [_marker("1", "nonfinite_audio"), _example("ok", [("What?", "Hello.")]), _marker("3")]
    batch = ConversationCollator(processor)(examples)
    assert batch["ids"] == real_ids(batch) == ["ok"] and batch["placeholders"] == 0
    assert batch["input_ids"].shape[0] == 1
    assert batch["dropped"] == [
        {
            "id": "1",
            "source": "m.jsonl:1",
            "reason": "nonfinite_audio",
            "file": "/data/1.wav",
            "detail": "cut off",
        },
        {
            "id": "3",
            "source": "m.jsonl:3",
            "reason": "truncated_audio",
            "file": "/data/3.wav",
            "detail": "cut off",
        },
    ]
    assert {d["reason"] for d in batch["dropped"]} <= set(DROP_REASONS)


def test_evaluation_padding_is_dropped_without_being_reported(processor):
    """Weight-0 examples repeat a real one to even out ranks: reporting them would count it twice."""
    examples = [
        _marker("1"),
        {**_marker("1"), "weight": 0.0},
        {**_example("long", [("?", "x")]), "weight": 0.0},
    ]
    examples[2]["messages"][0]["content"][0]["waveform"] = _wave(7.0)
    batch = ConversationCollator(processor)(examples)
    assert [d["id"] for d in batch["dropped"]] == ["1"]


@pytest.mark.parametrize("size", [1, 3])
def test_an_all_dropped_micro_batch_is_one_placeholder(processor, tiny, size):
    examples = [_marker(str(i), reason) for i, reason in zip(range(size), DROP_REASONS, strict=False)]
    batch = ConversationCollator(processor)(examples)
    assert batch["ids"] == ["<placeholder>"] and real_ids(batch) == [] and batch["placeholders"] == 1
    assert len(batch["dropped"]) == size
    assert batch["input_ids"].shape[0] == 1 and batch["example_weights"].tolist() == [0.0]
    assert real_token_count(batch) == 0 and batch["placeholder_tokens"] == int(batch["attention_mask"].sum())
    with torch.no_grad():
        logits = tiny[0].eval()(**model_inputs(batch)).logits  # a batch the model can run
    assert logits.shape[:2] == batch["input_ids"].shape and torch.isfinite(logits).all()


def _pair(example_id: str, clip: bool = True) -> dict:
    items = [{"type": "audio", "waveform": _wave(0.6)}] if clip else []
    prompt = [{"role": "user", "content": [*items, {"type": "text", "text": "What is said?"}]}]
    return {
        "id": example_id,
        "source": f"d.jsonl:{example_id}",
        "prompt": prompt,
        "chosen": "Yes.",
        "rejected": "No.",
    }


def test_preference_collator_drops_markers_and_adds_a_placeholder_pair(processor):
    batch = PreferenceCollator(processor)([_marker("x"), _pair("a", clip=False), _pair("b", clip=False)])
    assert (
        batch["ids"] == ["a", "b", "<placeholder>"] and batch["num_pairs"] == 3 and batch["placeholders"] == 1
    )
    assert [d["id"] for d in batch["dropped"]] == ["x"]
    assert batch["example_weights"].tolist() == [1.0, 1.0, 0.0]
    assert batch["input_ids"].shape[0] == 6 and batch["audio_clip_index"].tolist() == [0, 0]
    assert placeholder_rows(batch).tolist() == [False, False, True, False, False, True]
    assert torch.equal(batch["input_ids"][2], batch["input_ids"][5])
    assert (batch["labels"][[2, 5]] == IGNORE_INDEX).all()
    assert real_token_count(batch) == int(batch["attention_mask"][[0, 1, 3, 4]].sum())
    assert batch["placeholder_tokens"] == int(batch["attention_mask"][[2, 5]].sum())
    with_audio = PreferenceCollator(processor)([_pair("a"), _marker("x")])
    assert with_audio["placeholders"] == 0 and with_audio["num_pairs"] == 1
    everything_dropped = PreferenceCollator(processor)([_marker("x")])
    assert everything_dropped["num_pairs"] == 1 and real_ids(everything_dropped) == []


def test_generation_collator_drops_markers_and_adds_no_placeholder(processor):
    prompt = {"id": "p", "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi?"}]}]}
    batch = GenerationCollator(processor)([_marker("x"), prompt])
    assert batch["ids"] == ["p"] and batch["placeholders"] == 0 and "input_features" not in batch
    empty = GenerationCollator(processor)([_marker("x"), _marker("y", "empty_audio")])
    assert empty["ids"] == [] and empty["input_ids"].shape[0] == 0 and "input_features" not in empty
    assert [d["reason"] for d in empty["dropped"]] == ["truncated_audio", "empty_audio"]


def test_dpo_rows_share_one_copy_of_each_clip(corpus_dir, processor, tiny):
    dataset = ManifestDataset.from_manifest(str(corpus_dir / "dpo" / "train.jsonl"), "dpo")
    examples = [dataset[i] for i in range(4)]
    batch = PreferenceCollator(processor)(examples)
    pairs = batch["num_pairs"]
    assert pairs == 4 and batch["input_ids"].shape[0] == 8
    assert batch["input_features"].shape[0] == 4  # one clip per prompt, carried once
    assert batch["audio_clip_index"].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    tokenizer = processor.tokenizer
    for i, example in enumerate(examples):
        chosen = _supervised_segments(tokenizer, batch["input_ids"][i], batch["labels"][i])
        rejected = _supervised_segments(tokenizer, batch["input_ids"][pairs + i], batch["labels"][pairs + i])
        assert chosen == [example["chosen"] + "<|im_end|>"]
        assert rejected == [example["rejected"] + "<|im_end|>"]
        # The prompt part of both rows is identical and equals the processor's rendering of the prompt.
        prompt_len = int((batch["labels"][i] != IGNORE_INDEX).nonzero()[0])
        assert torch.equal(batch["input_ids"][i, :prompt_len], batch["input_ids"][pairs + i, :prompt_len])
    inputs = model_inputs(batch)
    assert inputs["input_features"].shape[0] == 8
    model = tiny[0].eval()
    with torch.no_grad():
        logits = model(**inputs).logits
    assert torch.isfinite(logits).all() and logits.shape[:2] == batch["input_ids"].shape


def test_generation_rows_are_left_padded_prompts_ending_with_the_assistant_header(processor):
    from lalm.data.collators import GenerationCollator

    short = {
        "id": "s",
        "messages": [{"role": "user", "content": [{"type": "audio", "waveform": _wave(0.5)}]}],
    }
    long = {
        "id": "l",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "audio", "waveform": _wave(1.5)},
                    {"type": "text", "text": "What is said in this recording?"},
                ],
            }
        ],
    }
    batch = GenerationCollator(processor)([short, long])
    mask = batch["attention_mask"]
    assert mask[0, 0] == 0 and mask[0, -1] == 1 and mask[1].all()  # left padding on the shorter row
    header = processor.tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    for row in range(2):
        assert batch["input_ids"][row, -len(header) :].tolist() == header
    assert (batch["labels"] == IGNORE_INDEX).all() and batch["input_features"].shape[0] == 2
