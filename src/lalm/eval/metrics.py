"""Metrics for free-text answers, the way Qwen2-Audio's official evaluation computes them.

- ASR: WER at corpus level (sum of edits / sum of reference words) after the language's normaliser; CER
  (per character, whitespace removed) for zh, yue, ja, ko and th (lalm.data.languages.CER_LANGUAGES).
  Normalisers: Whisper's English one for en; for zh and yue, Arabic numbers spelled out in Chinese
  (cn2an) and Cantonese's traditional characters converted to simplified (zhconv), as Qwen2-Audio's
  official evaluation does with its cn_tn text normaliser and zhconv; Whisper's basic normaliser
  (lowercase, punctuation removed, accents kept) for every other language.
- S2TT and captioning: corpus BLEU with sacrebleu and the tokenizer sacrebleu itself recommends for the
  target language, against one reference per hypothesis or several (Clotho's five captions).
- Classification tasks (lid, gender, style, sound, count): a documented rule maps the answer to a label.

jiwer counts edits, sacrebleu computes BLEU and transformers ships Whisper's normalisers; what is written
here is only the glue none of them does: picking the normaliser and unit per language, references that
are empty after normalisation, the ja-mecab fallback, and the answer -> label rule.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

import cn2an
import jiwer
import sacrebleu
import zhconv
from transformers.models.whisper.english_normalizer import BasicTextNormalizer, EnglishTextNormalizer

from lalm.data.languages import base_language, uses_characters

# Whisper's English normaliser also maps British to American spellings from a JSON file shipped with the
# tokenizer; we pass no mapping so that evaluation does not depend on a downloaded tokenizer.
_ENGLISH = EnglishTextNormalizer({})
# Keep accents: in fr/it/es/de they change the word ("là" vs "la").
_BASIC = BasicTextNormalizer(remove_diacritics=False)


def _check_pairs(first: list, second: list, names: str) -> None:
    if len(first) != len(second):
        raise ValueError(f"{names} must have the same length, got {len(first)} and {len(second)}")
    if not first:
        raise ValueError(f"{names} are empty: nothing to evaluate")


def _chinese(text: str, language: str) -> str:
    """Numbers as Chinese characters ("2024年" -> "二零二四年", "3.5元" -> "三点五元", as cn_tn does for the
    official evaluation), and for yue traditional characters as simplified, so that a transcript's
    digits or script do not count as errors."""
    if language == "yue":
        text = zhconv.convert(text, "zh-cn")
    try:
        return str(cn2an.transform(text, "an2cn"))
    except (ValueError, KeyError):  # cn2an refuses some digit runs (e.g. a lone "0.") — leave them
        return text


def normalize_text(text: str, language: str) -> str:
    """The language's normalisation before counting edits (any ISO 639 tag; by its base language).

    en -> Whisper's EnglishTextNormalizer ("Mr. Smith!" -> "mister smith", "It's" -> "it is", numbers
    spelled out become digits); zh, yue -> numbers as Chinese characters (and yue in simplified
    characters), then BasicTextNormalizer with all whitespace removed; ja, ko, th -> BasicTextNormalizer
    with whitespace removed (CER counts characters); any other language -> BasicTextNormalizer
    (lowercase, punctuation and symbols become spaces, accents kept).
    """
    base = base_language(language)
    if base == "en":
        return _ENGLISH(text)
    if base in ("zh", "yue"):
        text = _chinese(text, base)
    if uses_characters(base):
        return "".join(_BASIC(text).split())
    return _BASIC(text)


def error_rate(references: list[str], hypotheses: list[str], language: str) -> dict:
    """Corpus WER (or CER for zh/yue/ja/ko/th) = total edits (S + D + I) / total reference words (characters).

    Not the mean of per-utterance rates: a long utterance weighs more than a short one, as in Qwen2-Audio's
    evaluation. Texts are normalised with `normalize_text` first. A reference that is empty after
    normalisation has no units, so its hypothesis units all count as insertions (jiwer 3 refuses empty
    references, so they are counted here rather than passed to it).

    Returns {"error_rate": float, "edits": int, "reference_units": int, "kind": "wer" | "cer"}.
    Raises ValueError when every reference is empty after normalisation: the rate is undefined.
    """
    _check_pairs(references, hypotheses, "references and hypotheses")
    kind = "cer" if uses_characters(language) else "wer"
    refs = [normalize_text(t, language) for t in references]
    hyps = [normalize_text(t, language) for t in hypotheses]
    units = list if kind == "cer" else str.split
    kept = [(r, h) for r, h in zip(refs, hyps, strict=True) if units(r)]
    edits = sum(len(units(h)) for r, h in zip(refs, hyps, strict=True) if not units(r))
    if not kept:
        raise ValueError(f"all {len(refs)} references are empty after normalisation; the {kind} is undefined")
    process = jiwer.process_characters if kind == "cer" else jiwer.process_words
    out = process([r for r, _ in kept], [h for _, h in kept])
    edits += out.substitutions + out.deletions + out.insertions
    reference_units = out.hits + out.substitutions + out.deletions
    return {
        "error_rate": edits / reference_units,
        "edits": edits,
        "reference_units": reference_units,
        "kind": kind,
    }


@lru_cache(maxsize=1)
def _ja_mecab_available() -> bool:
    """Whether sacrebleu can build its ja-mecab tokenizer (needs mecab-python3 and ipadic); tried once."""
    try:
        from sacrebleu.tokenizers.tokenizer_ja_mecab import TokenizerJaMecab

        TokenizerJaMecab()
    except (ImportError, RuntimeError, AssertionError):
        return False
    return True


def bleu_tokenizer(target_language: str) -> str:
    """The sacrebleu tokenizer for a target language: 'zh' for zh and yue (both written in Han characters),
    'ja-mecab' for ja where MeCab with ipadic is installed, '13a' (sacrebleu's default) otherwise.

    These are the choices sacrebleu makes itself from `trg_lang` (BLEU._TOKENIZER_MAP), plus yue; a tag
    goes by its base language ('zh-TW' -> 'zh').
    """
    target_language = base_language(target_language)
    if target_language in ("zh", "yue"):
        return "zh"
    if target_language == "ja" and _ja_mecab_available():
        return "ja-mecab"
    return "13a"


def reference_streams(references: Sequence[str | Sequence[str]]) -> list[list[str | None]]:
    """Per-hypothesis references (a string, or a list of strings) as sacrebleu's reference streams:
    stream k holds every hypothesis's k-th reference, None where a hypothesis has fewer than k + 1.

    sacrebleu drops the None of a stream per segment (BLEU._cache_references), so each hypothesis is
    scored against exactly its own references: n-gram counts clipped by their maximum over them, and
    the brevity penalty taken from the one closest in length. Padding with "" instead would add an
    empty reference of length 0, which the brevity penalty could pick. ValueError for a hypothesis
    without any reference string."""
    lists = [[refs] if isinstance(refs, str) else list(refs) for refs in references]
    for index, refs in enumerate(lists):
        if not refs or not all(isinstance(r, str) for r in refs):
            raise ValueError(f"hypothesis {index} needs one or more reference strings, got {refs!r}")
    width = max((len(refs) for refs in lists), default=0)
    return [[refs[k] if k < len(refs) else None for refs in lists] for k in range(width)]


def bleu(references: Sequence[str | Sequence[str]], hypotheses: list[str], target_language: str) -> float:
    """Corpus BLEU (0-100) of the hypotheses with `bleu_tokenizer`, each against its reference or its
    several references (a list per hypothesis; the number may vary, see `reference_streams`)."""
    _check_pairs(list(references), hypotheses, "references and hypotheses")
    tokenize = bleu_tokenizer(target_language)
    streams = reference_streams(references)
    # sacrebleu annotates streams as str only, but its BLEU._cache_references drops None (no reference).
    return float(sacrebleu.corpus_bleu(hypotheses, streams, tokenize=tokenize).score)  # type: ignore[arg-type]


# Scripts written without spaces between words, where a surface form is matched as a substring:
# CJK ideographs (and extension A, compatibility), hiragana and katakana.
_NO_SPACE_SCRIPT = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def _is_edge(char: str) -> bool:
    return char.isspace() or unicodedata.category(char).startswith("P")


def _clean(text: str) -> str:
    """Lowercase, and strip whitespace and punctuation (any Unicode P* category) at both ends."""
    text = text.lower()
    start, end = 0, len(text)
    while start < end and _is_edge(text[start]):
        start += 1
    while end > start and _is_edge(text[end - 1]):
        end -= 1
    return text[start:end]


def _form_pattern(form: str) -> re.Pattern[str]:
    if _NO_SPACE_SCRIPT.search(form):
        return re.compile(re.escape(form))
    return re.compile(rf"(?<!\w){re.escape(form)}(?!\w)")


def _surface_forms(labels: dict[str, list[str]]) -> dict[str, str]:
    """Cleaned surface form -> its label; a form listed under two labels is a configuration error."""
    if not labels:
        raise ValueError("labels is empty: give each label its surface forms")
    owner: dict[str, str] = {}
    for label, forms in labels.items():
        for form in map(_clean, forms):
            if not form:
                raise ValueError(f"label {label!r} has a surface form that is empty after cleaning")
            if owner.setdefault(form, label) != label:
                raise ValueError(f"surface form {form!r} is listed under both {owner[form]!r} and {label!r}")
    return owner


def map_to_label(answer: str, labels: dict[str, list[str]]) -> str | None:
    """Map a free-text answer to one of `labels` (label -> its surface forms), or None (counted wrong).

    The rule. The answer and every surface form are lowercased and stripped of whitespace and
    punctuation at both ends. Then:
    (1) if the whole answer equals a surface form, return that form's label;
    (2) else find the surface forms that occur in the answer, as whole words (not inside a longer word)
        or, for forms in CJK script (Han, kana), as substrings since those scripts have no spaces.
        Forms are matched longest first, and a match may not overlap a span an earlier (longer) form
        matched, so "female" does not also count as "male". If the matches all belong to exactly one
        label, return it;
    (3) else (no label, or several labels, e.g. "male or female") return None.
    A label's own name counts only if it is listed among its surface forms. Negation is not understood:
    "not a woman" maps to the label of "woman".
    """
    owner = _surface_forms(labels)
    text = _clean(answer)
    if text in owner:
        return owner[text]
    claimed: list[tuple[int, int]] = []
    found: set[str] = set()
    for form in sorted(owner, key=len, reverse=True):
        for match in _form_pattern(form).finditer(text):
            start, end = match.span()
            if all(end <= s or start >= e for s, e in claimed):
                claimed.append((start, end))
                found.add(owner[form])
    return found.pop() if len(found) == 1 else None


def accuracy(references: list[str], predictions: list[str | None]) -> float:
    """Fraction of predictions equal to their reference label; None (no label found) counts as wrong."""
    _check_pairs(references, predictions, "references and predictions")
    return sum(p is not None and p == r for r, p in zip(references, predictions, strict=True)) / len(
        references
    )


def preference_summary(chosen_rewards: list[float], rejected_rewards: list[float]) -> dict:
    """Reward-model style summary of preference pairs, as TRL's rewards/accuracies and rewards/margins.

    Returns {"accuracy": fraction of pairs with chosen > rejected (a tie counts as wrong),
    "margin": mean of chosen - rejected, "pairs": n}.
    """
    _check_pairs(chosen_rewards, rejected_rewards, "chosen_rewards and rejected_rewards")
    pairs = list(zip(chosen_rewards, rejected_rewards, strict=True))
    n = len(pairs)
    return {
        "accuracy": sum(c > r for c, r in pairs) / n,
        "margin": sum(c - r for c, r in pairs) / n,
        "pairs": n,
    }
