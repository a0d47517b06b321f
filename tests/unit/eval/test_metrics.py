"""Eval metrics against numbers worked out by hand, cross-checked with jiwer and sacrebleu called directly."""

from __future__ import annotations

import importlib.util
import math

import jiwer
import pytest
import sacrebleu

from lalm.data.languages import CER_LANGUAGES
from lalm.eval import metrics
from lalm.eval.metrics import (
    accuracy,
    bleu,
    bleu_tokenizer,
    error_rate,
    map_to_label,
    normalize_text,
    preference_summary,
    reference_streams,
)

GENDER = {"female": ["female", "woman", "女性", "女"], "male": ["male", "man", "男性", "男"]}


# --- normalisation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, World!", "hello world"),  # case and punctuation
        ("Mr. Smith", "mister smith"),  # Whisper expands titles
        ("It isn't here.", "it is not here"),  # and contractions
        ("I'm gonna go", "i am going to go"),
    ],
)
def test_normalize_english_uses_whisper_normaliser(text: str, expected: str) -> None:
    assert normalize_text(text, "en") == expected


def test_normalize_space_delimited_keeps_accents() -> None:
    # Basic normaliser: lowercase, apostrophes and punctuation become spaces, accents stay.
    assert normalize_text("C'est l'Été!", "fr").split() == ["c", "est", "l", "été"]
    assert normalize_text("Straße, ÜBER", "de").split() == ["straße", "über"]


@pytest.mark.parametrize("language", CER_LANGUAGES)
def test_normalize_cer_languages_drop_punctuation_and_all_whitespace(language: str) -> None:
    # Full-width comma and exclamation mark go, and the spaces they leave too; NFKC folds full-width Latin.
    assert normalize_text("你好，世界！ Ａ Ｂ", language) == "你好世界ab"


def test_normalize_chinese_spells_out_numbers_and_simplifies_cantonese() -> None:
    # As the official Qwen2-Audio evaluation's cn_tn does before CER: digits become Chinese numerals.
    assert normalize_text("我有2024个苹果，3.5元！", "zh") == "我有二千零二十四个苹果三点五元"
    assert normalize_text("2020年", "zh-CN") == "二零二零年"
    # Cantonese written in traditional characters is compared in simplified ones (zhconv).
    assert normalize_text("我們說廣東話。", "yue") == "我们说广东话"
    # A transcript with digits and one with numerals score the same.
    assert error_rate(["我有二十个"], ["我有20个"], "zh")["error_rate"] == 0.0


def test_normalize_other_languages_with_the_basic_normaliser() -> None:
    assert normalize_text("Bore da, Gymru!", "cy").split() == ["bore", "da", "gymru"]
    assert normalize_text("Ça VA", "fr-CA").split() == ["ça", "va"]
    assert error_rate(["안녕 하세요"], ["안녕하세요"], "ko")["kind"] == "cer"  # spaces do not count
    assert error_rate(["안녕 하세요"], ["안녕하세요"], "ko")["error_rate"] == 0.0


def test_normalize_unknown_language_raises() -> None:
    with pytest.raises(ValueError, match="'klingon'"):
        normalize_text("qapla", "klingon")


# --- WER / CER ------------------------------------------------------------------------------------------


def test_wer_single_pair_by_hand() -> None:
    # ref "the cat sat" hyp "the cat sit down": sat->sit 1 sub + "down" 1 ins = 2 edits / 3 words.
    out = error_rate(["the cat sat"], ["the cat sit down"], "en")
    assert out == {"error_rate": pytest.approx(2 / 3), "edits": 2, "reference_units": 3, "kind": "wer"}
    assert out["error_rate"] == pytest.approx(jiwer.wer("the cat sat", "the cat sit down"))


def test_wer_is_corpus_level_not_mean_of_utterances() -> None:
    refs = ["the cat sat", "a b c d e f g h i j"]
    hyps = ["the cat sit down", "a b c d e f g h i j"]
    # Utterance 1: 2 edits / 3 words; utterance 2: 0 edits / 10 words.
    # Corpus: (2 + 0) / (3 + 10) = 2/13 ≈ 0.154; the mean of utterance WERs would be (2/3 + 0)/2 = 1/3.
    out = error_rate(refs, hyps, "en")
    assert out["edits"] == 2 and out["reference_units"] == 13
    assert out["error_rate"] == pytest.approx(2 / 13)
    assert out["error_rate"] != pytest.approx((2 / 3 + 0) / 2)
    assert out["error_rate"] == pytest.approx(jiwer.wer(refs, hyps))  # jiwer's list WER is corpus-level too


def test_wer_after_english_normalisation() -> None:
    ref, hyp = "Mr. Smith isn't here.", "mister smith is not here"
    # Raw: Mr./mister, Smith/smith, isn't/is, here./not are 4 subs, + "here" 1 ins = 5 edits / 4 words.
    assert jiwer.wer(ref, hyp) == pytest.approx(1.25)
    # Normalised both read "mister smith is not here": 0 edits / 5 words.
    assert error_rate([ref], [hyp], "en") == {
        "error_rate": 0.0,
        "edits": 0,
        "reference_units": 5,
        "kind": "wer",
    }


def test_wer_french_counts_a_missing_accent() -> None:
    # "c est l été" vs "c est l ete": 1 sub / 4 words (diacritics are kept, so été != ete).
    out = error_rate(["C'est l'été."], ["c'est l'ete"], "fr")
    assert out["edits"] == 1 and out["reference_units"] == 4
    assert out["error_rate"] == pytest.approx(0.25)


def test_cer_chinese_ignores_full_width_punctuation() -> None:
    # "你好，世界！" -> "你好世界"; hyp "你好世间。" -> "你好世间": 界->间 1 sub / 4 characters.
    out = error_rate(["你好，世界！"], ["你好世间。"], "zh")
    assert out == {"error_rate": pytest.approx(0.25), "edits": 1, "reference_units": 4, "kind": "cer"}
    assert out["error_rate"] == pytest.approx(jiwer.cer("你好世界", "你好世间"))


def test_cer_corpus_level_with_spaces_in_hypothesis() -> None:
    # ref1 "我爱你" hyp1 "我 恨 你们": spaces dropped -> "我恨你们": 爱->恨 1 sub + 们 1 ins = 2 edits / 3.
    # ref2 "今天天气很好" hyp2 "今天天气好": 很 1 del = 1 edit / 6.  Corpus: 3 / 9 = 1/3 (mean would be 5/12).
    out = error_rate(["我爱你", "今天天气很好"], ["我 恨 你们", "今天天气好"], "yue")
    assert (out["edits"], out["reference_units"], out["kind"]) == (3, 9, "cer")
    assert out["error_rate"] == pytest.approx(1 / 3)
    assert out["error_rate"] == pytest.approx(
        jiwer.cer(["我爱你", "今天天气很好"], ["我恨你们", "今天天气好"])
    )


def test_empty_reference_counts_hypothesis_as_insertions() -> None:
    # ref1 "!!!" is empty once punctuation goes: hyp1 "x y" = 2 insertions.
    # ref2 "a b" hyp2 "a b": 0 edits / 2 words.  Corpus: 2 / 2 = 1.0.
    out = error_rate(["!!!", "a b"], ["x y", "a b"], "en")
    assert (out["edits"], out["reference_units"]) == (2, 2)
    assert out["error_rate"] == pytest.approx(1.0)
    # CER: empty ref, hyp "好的" = 2 insertions; ref "你好" hyp "你" = 1 deletion. (2 + 1) / 2 = 1.5.
    out = error_rate(["。", "你好"], ["好的", "你"], "zh")
    assert (out["edits"], out["reference_units"]) == (3, 2)


def test_all_references_empty_raises() -> None:
    with pytest.raises(ValueError, match="empty after normalisation"):
        error_rate(["", "?!"], ["a", "b"], "en")


# --- BLEU -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target_language", "expected"),
    [("zh", "zh"), ("yue", "zh"), ("en", "13a"), ("de", "13a"), ("fr", "13a")],
)
def test_bleu_tokenizer_mapping(target_language: str, expected: str) -> None:
    assert bleu_tokenizer(target_language) == expected


def test_bleu_tokenizer_japanese_uses_mecab_when_installed() -> None:
    installed = all(importlib.util.find_spec(m) is not None for m in ("MeCab", "ipadic"))
    assert bleu_tokenizer("ja") == ("ja-mecab" if installed else "13a")


def test_bleu_tokenizer_japanese_falls_back_to_13a(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_ja_mecab_available", lambda: False)
    assert bleu_tokenizer("ja") == "13a"


@pytest.mark.parametrize("target_language", ["en", "zh", "de"])
def test_bleu_identical_is_100(target_language: str) -> None:
    refs = ["the cat sat on the mat", "我今天很喜欢猫"]
    assert bleu(refs, list(refs), target_language) == pytest.approx(100.0)


def test_bleu_english_by_hand() -> None:
    # hyp "the cat sat on the mat" vs ref "the cat sat on a mat", 6 tokens each so BP = 1.
    # 1-grams 5/6 (the, cat, sat, on, mat; the second "the" is clipped); 2-grams 3/5 (the cat, cat sat,
    # sat on); 3-grams 2/4 (the cat sat, cat sat on); 4-grams 1/3 (the cat sat on).
    # BLEU = 100 * (5/6 * 3/5 * 2/4 * 1/3) ** (1/4) = 100 * (1/12) ** 0.25 ≈ 53.73.
    expected = 100 * (1 / 12) ** 0.25
    score = bleu(["the cat sat on a mat"], ["the cat sat on the mat"], "en")
    assert score == pytest.approx(expected, abs=1e-6)
    direct = sacrebleu.corpus_bleu(["the cat sat on the mat"], [["the cat sat on a mat"]], tokenize="13a")
    assert score == pytest.approx(direct.score)


@pytest.mark.parametrize("target_language", ["zh", "yue"])
def test_bleu_chinese_tokenizes_characters(target_language: str) -> None:
    # 'zh' splits Han characters: hyp 我今天很喜欢狗 vs ref 我今天很喜欢猫, 7 characters each (BP = 1).
    # 1-grams 6/7, 2-grams 5/6, 3-grams 4/5, 4-grams 3/4 -> product 360/840 = 3/7; BLEU = 100 * (3/7)^(1/4).
    score = bleu(["我今天很喜欢猫"], ["我今天很喜欢狗"], target_language)
    assert score == pytest.approx(100 * (3 / 7) ** 0.25, abs=1e-6)
    assert score == pytest.approx(
        sacrebleu.corpus_bleu(["我今天很喜欢狗"], [["我今天很喜欢猫"]], tokenize="zh").score
    )
    # With 13a the sentence is one token that does not match: the score would be near 0.
    assert sacrebleu.corpus_bleu(["我今天很喜欢狗"], [["我今天很喜欢猫"]], tokenize="13a").score < 1.0


def test_bleu_japanese_matches_sacrebleu_with_same_tokenizer() -> None:
    refs, hyps = ["今日は晴れです。"], ["今日は雨です。"]
    tokenize = bleu_tokenizer("ja")
    assert bleu(refs, hyps, "ja") == pytest.approx(
        sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize).score
    )
    assert 0.0 < bleu(refs, hyps, "ja") < 100.0


def test_reference_streams_pad_missing_references_with_none() -> None:
    assert reference_streams(["a", ["b1", "b2", "b3"], ("c1", "c2")]) == [
        ["a", "b1", "c1"],
        [None, "b2", "c2"],
        [None, "b3", None],
    ]
    assert reference_streams(["x", "y"]) == [["x", "y"]]  # one reference each: one stream, as before
    with pytest.raises(ValueError, match="hypothesis 1 needs one or more reference strings, got \\[\\]"):
        reference_streams(["a", []])


def test_bleu_with_several_references_per_hypothesis() -> None:
    hyps = ["the cat sat on the mat", "a dog barks"]
    refs = [["there is a cat on the mat", "the cat sat on the mat"], "a dog is barking"]
    direct = sacrebleu.corpus_bleu(
        hyps, [["there is a cat on the mat", "a dog is barking"], ["the cat sat on the mat", None]]
    )
    assert bleu(refs, hyps, "en") == pytest.approx(direct.score)
    assert bleu(refs, hyps, "en") > bleu([r if isinstance(r, str) else r[0] for r in refs], hyps, "en")


# --- answer -> label ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Female.", "female"),  # rule 1 after lowercasing and stripping the full stop
        ("  FEMALE!! ", "female"),
        ("It is a woman speaking", "female"),  # rule 2, whole word
        ("male", "male"),
        ("female", "female"),  # not male: "male" inside "female" is masked by the longer form
        ("The speaker is female.", "female"),
        ("女性", "female"),
        ("她是女性。", "female"),  # CJK form matched as a substring
        ("I am not sure", None),  # rule 3, nothing matches
        ("male or female", None),  # two labels
        ("男女", None),  # two labels, CJK
        ("a malefactor", None),  # "male" is not a whole word here
        ("", None),
    ],
)
def test_map_to_label(answer: str, expected: str | None) -> None:
    assert map_to_label(answer, GENDER) == expected


def test_map_to_label_multi_word_forms_win_over_their_parts() -> None:
    labels = {"speech": ["speech"], "music": ["music"], "speech_with_music": ["speech with music"]}
    assert map_to_label("It is speech with music.", labels) == "speech_with_music"
    assert map_to_label("Just speech here", labels) == "speech"


def test_map_to_label_rejects_bad_label_sets() -> None:
    with pytest.raises(ValueError, match="empty"):
        map_to_label("female", {})
    with pytest.raises(ValueError, match="both"):
        map_to_label("x", {"a": ["same"], "b": ["Same."]})
    with pytest.raises(ValueError, match="empty after cleaning"):
        map_to_label("x", {"a": ["..."]})


# --- accuracy and preference summary --------------------------------------------------------------------


def test_accuracy_by_hand() -> None:
    # a==a right, None wrong, x!=c wrong, d==d right: 2 / 4.
    assert accuracy(["a", "b", "c", "d"], ["a", None, "x", "d"]) == pytest.approx(0.5)
    assert accuracy(["a"], ["a"]) == 1.0


def test_accuracy_end_to_end_with_map_to_label() -> None:
    answers = ["Female.", "It's a man.", "male or female", "woman"]
    # female right, male right, None wrong, female vs reference male wrong: 2 / 4.
    assert accuracy(["female", "male", "female", "male"], [map_to_label(a, GENDER) for a in answers]) == 0.5


def test_preference_summary_by_hand() -> None:
    # chosen - rejected = 1, 0, -1, 0.5: accuracy 2/4 (the tie is not a win), margin 0.5/4 = 0.125.
    out = preference_summary([1.0, 0.5, -1.0, 2.0], [0.0, 0.5, 0.0, 1.5])
    assert out == {"accuracy": 0.5, "margin": pytest.approx(0.125), "pairs": 4}
    assert math.isclose(preference_summary([3.0], [1.0])["margin"], 2.0)


# --- error cases ----------------------------------------------------------------------------------------

CALLS = {
    "error_rate": lambda a, b: error_rate(a, b, "en"),
    "bleu": lambda a, b: bleu(a, b, "en"),
    "accuracy": accuracy,
    "preference_summary": preference_summary,
}


@pytest.mark.parametrize("name", CALLS)
def test_length_mismatch_raises(name: str) -> None:
    first, second = (["a", "b"], ["a"]) if name != "preference_summary" else ([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="same length, got 2 and 1"):
        CALLS[name](first, second)


@pytest.mark.parametrize("name", CALLS)
def test_empty_input_raises(name: str) -> None:
    with pytest.raises(ValueError, match="are empty"):
        CALLS[name]([], [])
