"""score_generations: multi-reference BLEU (Clotho's five captions) against sacrebleu's own streams, and
the per-manifest breakdown of a task whose items come from several manifests (AIR-Bench Foundation)."""

from __future__ import annotations

import pytest
import sacrebleu

from lalm.eval.scoring import references_of, score_generations

# Three clips, their captions (one, three and two of them) and what a model wrote.
CAPTIONS = [
    ["a dog barks in the distance", "a dog is barking far away", "far away a dog keeps barking"],
    ["rain falls on a tin roof"],
    ["birds are singing in a forest", "many birds chirp among the trees"],
]
PREDICTIONS = ["a dog is barking far away", "rain falls", "many birds chirp in the trees"]


def _caption_items(with_references: bool) -> list[dict]:
    return [
        {
            "task": "caption",
            "language": None,
            "target_language": "en",
            "reference": captions[0],
            **({"references": captions} if with_references else {}),
            "prediction": prediction,
        }
        for captions, prediction in zip(CAPTIONS, PREDICTIONS, strict=True)
    ]


def test_multi_reference_bleu_is_sacrebleus_on_the_padded_streams() -> None:
    streams = [
        [CAPTIONS[0][0], CAPTIONS[1][0], CAPTIONS[2][0]],
        [CAPTIONS[0][1], None, CAPTIONS[2][1]],
        [CAPTIONS[0][2], None, None],
    ]
    expected = sacrebleu.corpus_bleu(PREDICTIONS, streams, tokenize="13a").score
    metrics = score_generations(_caption_items(with_references=True))
    assert metrics == {"caption/en/bleu": pytest.approx(expected), "caption/en/n": 3}
    # None pads: each clip is scored against its own captions only. Repeating a clip's caption in
    # the gaps (which changes neither clipping nor the closest length) gives the same BLEU ...
    repeated = [
        streams[0],
        [CAPTIONS[0][1], CAPTIONS[1][0], CAPTIONS[2][1]],
        [CAPTIONS[0][2]] + streams[0][1:],
    ]
    assert sacrebleu.corpus_bleu(PREDICTIONS, repeated, tokenize="13a").score == pytest.approx(expected)
    # ... while "" would be an extra empty reference, whose length 0 the brevity penalty may pick.
    empty = [[ref if ref is not None else "" for ref in stream] for stream in streams]
    assert sacrebleu.corpus_bleu(PREDICTIONS, empty, tokenize="13a").score != pytest.approx(expected)


def test_multi_reference_bleu_is_at_least_single_reference_bleu() -> None:
    single = score_generations(_caption_items(with_references=False))["caption/en/bleu"]
    multi = score_generations(_caption_items(with_references=True))["caption/en/bleu"]
    assert single == pytest.approx(
        sacrebleu.corpus_bleu(PREDICTIONS, [[c[0] for c in CAPTIONS]], tokenize="13a").score
    )
    assert multi > single + 10  # the predictions paraphrase the second captions, not the first


def test_an_item_without_references_falls_back_to_its_reference() -> None:
    assert references_of({"reference": "a b"}) == ["a b"]
    assert references_of({"reference": "a b", "references": None}) == ["a b"]
    assert references_of({"reference": "a b", "references": ["a b", "c"]}) == ["a b", "c"]


def _item(
    task: str, manifest: str | None, reference: str, prediction: str, language: str | None = None
) -> dict:
    item = {"task": task, "language": language, "target_language": None}
    item.update({"reference": reference, "prediction": prediction})
    return item if manifest is None else {**item, "manifest": manifest}


def _choice(manifest: str | None, reference: str, prediction: str) -> dict:
    return _item("choice", manifest, reference, prediction)


def test_a_task_over_several_manifests_is_also_scored_per_manifest() -> None:
    items = [
        _choice("out/eval/airbench_foundation_sound_aqa.jsonl", "C", "c."),
        _choice("out/eval/airbench_foundation_sound_aqa.jsonl", "A", "B"),
        _choice("out/eval/airbench_foundation_audio_grounding.jsonl", "B", "B"),
        _item("chat", None, "Yes.", "yes"),
    ]
    assert score_generations(items) == {
        "choice/exact_match": pytest.approx(2 / 3),
        "choice/n": 3,
        "choice/airbench_foundation_audio_grounding/exact_match": 1.0,
        "choice/airbench_foundation_audio_grounding/n": 1,
        "choice/airbench_foundation_sound_aqa/exact_match": 0.5,
        "choice/airbench_foundation_sound_aqa/n": 2,
        "chat/exact_match": 1.0,
        "chat/n": 1,
    }
    one_manifest = [i for i in items if "sound_aqa" in i.get("manifest", "")]
    assert score_generations(one_manifest) == {"choice/exact_match": 0.5, "choice/n": 2}
    no_manifest = [_choice(None, "C", "C"), _choice(None, "A", "C")]
    assert score_generations(no_manifest) == {"choice/exact_match": 0.5, "choice/n": 2}


def test_per_manifest_text_and_label_scores() -> None:
    items = [
        _item("asr", "a/test_clean.jsonl", "the cat sat", "the cat sat", language="en"),
        _item("asr", "a/test_other.jsonl", "a dog ran off", "a dog ran", language="en"),
        # "anger" is a label only in b/: the prediction naming joy and anger is ambiguous in both scores
        _item("emotion", "a/meld.jsonl", "joy", "joy or anger"),
        _item("emotion", "a/meld.jsonl", "sadness", "sadness"),
        _item("emotion", "b/iemocap.jsonl", "anger", "anger"),
    ]
    metrics = score_generations(items)
    assert metrics["asr/en/wer"] == pytest.approx(1 / 7)
    assert metrics["asr/test_clean/en/wer"] == 0.0 and metrics["asr/test_other/en/wer"] == 0.25
    assert metrics["asr/test_other/en/n"] == 1
    assert metrics["emotion/accuracy"] == pytest.approx(2 / 3)
    assert metrics["emotion/meld/accuracy"] == 0.5 and metrics["emotion/iemocap/accuracy"] == 1.0
