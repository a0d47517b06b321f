"""Multilingual sentence bank for a synthetic speech corpus spoken by espeak-ng.

Every sentence is produced from a small template whose MEANING is known: a language-independent key
such as ``"trip:anna:market:mon"`` fixes who goes where and when.  Because the meaning is explicit we
get, for free and without any model or human labelling:

* translations — the same key rendered in two languages is a parallel sentence pair;
* answers — question keys (``"sum:3:4"``, ``"next_day:mon"``) carry their own correct answer;
* corruptions — swapping one content word of a statement gives a near-miss sentence (for DPO pairs).

All text is original.  Japanese is written in kana only (espeak-ng cannot read kanji) with spaces
between words and particles; Mandarin uses simplified and Cantonese traditional Hanzi, both with
full-width punctuation.  Lexicon entries are whole phrases per language (e.g. "au marché" /
"à la gare", "zum Markt" / "zur Schule") so no grammatical-gender logic is needed.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

LANGUAGES: tuple[str, ...] = ("en", "zh", "yue", "fr", "it", "es", "de", "ja")
STATEMENT_FAMILIES: tuple[str, ...] = ("trip", "weather")
QUESTION_FAMILIES: tuple[str, ...] = ("sum", "next_day")

NAME_IDS = ("anna", "tom", "maria", "leo", "lucy", "paul", "emma")
PLACE_IDS = ("market", "station", "school", "park", "library", "hospital", "beach", "museum")
DAY_IDS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEATHER_IDS = ("sunny", "rain", "snow", "windy", "cloudy")
CITY_IDS = ("paris", "tokyo", "berlin", "madrid", "rome", "beijing", "london", "hongkong")
MAX_OPERAND = 10
OPERAND_IDS = tuple(str(n) for n in range(MAX_OPERAND + 1))
MAX_NUMBER = 20


@dataclass(frozen=True)
class Sentence:
    key: str  # language-independent meaning key; equal keys = same meaning
    family: str  # "trip" | "weather" | "sum" | "next_day"
    language: str
    text: str


# --------------------------------------------------------------------------- lexicons
# Each tuple is aligned with the matching *_IDS tuple above.


def _split(entries: str) -> tuple[str, ...]:
    """Compact lexicon notation: phrases separated by "|"."""
    return tuple(entries.split("|"))


_NAMES: dict[str, tuple[str, ...]] = {
    "en": ("Anna", "Tom", "Maria", "Leo", "Lucy", "Paul", "Emma"),
    "zh": ("安娜", "汤姆", "玛丽亚", "利奥", "露西", "保罗", "艾玛"),
    "yue": ("安娜", "湯姆", "瑪麗亞", "利奧", "露西", "保羅", "艾瑪"),
    "fr": ("Anna", "Tom", "Maria", "Léo", "Lucie", "Paul", "Emma"),
    "it": ("Anna", "Tom", "Maria", "Leo", "Lucia", "Paolo", "Emma"),
    "es": ("Ana", "Tomás", "María", "Leo", "Lucía", "Pablo", "Emma"),
    "de": ("Anna", "Tom", "Maria", "Leo", "Lucy", "Paul", "Emma"),
    "ja": ("アンナ", "トム", "マリア", "レオ", "ルーシー", "ポール", "エマ"),
}

_PLACES: dict[str, tuple[str, ...]] = {
    "en": _split(
        "to the market|to the station|to school|to the park|to the library|to the hospital|"
        "to the beach|to the museum"
    ),
    "zh": ("市场", "车站", "学校", "公园", "图书馆", "医院", "海滩", "博物馆"),
    "yue": ("街市", "車站", "學校", "公園", "圖書館", "醫院", "海灘", "博物館"),
    "fr": _split("au marché|à la gare|à l'école|au parc|à la bibliothèque|à l'hôpital|à la plage|au musée"),
    "it": _split(
        "al mercato|alla stazione|a scuola|al parco|in biblioteca|all'ospedale|in spiaggia|al museo"
    ),
    "es": _split(
        "al mercado|a la estación|a la escuela|al parque|a la biblioteca|al hospital|a la playa|al museo"
    ),
    "de": _split(
        "zum Markt|zum Bahnhof|zur Schule|in den Park|in die Bibliothek|ins Krankenhaus|zum Strand|ins Museum"
    ),
    "ja": ("いちば", "えき", "がっこう", "こうえん", "としょかん", "びょういん", "はまべ", "はくぶつかん"),
}

_DAYS: dict[str, tuple[str, ...]] = {
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "zh": ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日"),
    "yue": ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日"),
    "fr": ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
    "it": ("lunedì", "martedì", "mercoledì", "giovedì", "venerdì", "sabato", "domenica"),
    "es": ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
    "de": ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"),
    "ja": ("げつようび", "かようび", "すいようび", "もくようび", "きんようび", "どようび", "にちようび"),
}

_WEATHERS: dict[str, tuple[str, ...]] = {
    "en": ("sunny", "raining", "snowing", "windy", "cloudy"),
    "zh": ("天气晴朗", "下雨", "下雪", "刮大风", "多云"),
    "yue": ("好天", "落雨", "落雪", "好大風", "多雲"),
    "fr": ("il fait beau", "il pleut", "il neige", "il y a du vent", "le temps est nuageux"),
    "it": ("c'è il sole", "piove", "nevica", "c'è vento", "è nuvoloso"),
    "es": ("hace sol", "llueve", "nieva", "hace viento", "está nublado"),
    "de": ("ist es sonnig", "regnet es", "schneit es", "ist es windig", "ist es bewölkt"),
    "ja": ("はれ です", "あめ です", "ゆき です", "かぜ が つよい です", "くもり です"),
}

_CITIES: dict[str, tuple[str, ...]] = {
    "en": ("Paris", "Tokyo", "Berlin", "Madrid", "Rome", "Beijing", "London", "Hong Kong"),
    "zh": ("巴黎", "东京", "柏林", "马德里", "罗马", "北京", "伦敦", "香港"),
    "yue": ("巴黎", "東京", "柏林", "馬德里", "羅馬", "北京", "倫敦", "香港"),
    "fr": ("Paris", "Tokyo", "Berlin", "Madrid", "Rome", "Pékin", "Londres", "Hong Kong"),
    "it": ("Parigi", "Tokyo", "Berlino", "Madrid", "Roma", "Pechino", "Londra", "Hong Kong"),
    "es": ("París", "Tokio", "Berlín", "Madrid", "Roma", "Pekín", "Londres", "Hong Kong"),
    "de": ("Paris", "Tokio", "Berlin", "Madrid", "Rom", "Peking", "London", "Hongkong"),
    "ja": ("パリ", "トウキョウ", "ベルリン", "マドリード", "ローマ", "ペキン", "ロンドン", "ホンコン"),
}

_NUMBERS_0_20: dict[str, tuple[str, ...]] = {
    "en": _split(
        "zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
        "fifteen|sixteen|seventeen|eighteen|nineteen|twenty"
    ),
    "fr": _split(
        "zéro|un|deux|trois|quatre|cinq|six|sept|huit|neuf|dix|onze|douze|treize|quatorze|quinze|"
        "seize|dix-sept|dix-huit|dix-neuf|vingt"
    ),
    "it": _split(
        "zero|uno|due|tre|quattro|cinque|sei|sette|otto|nove|dieci|undici|dodici|tredici|"
        "quattordici|quindici|sedici|diciassette|diciotto|diciannove|venti"
    ),
    "es": _split(
        "cero|uno|dos|tres|cuatro|cinco|seis|siete|ocho|nueve|diez|once|doce|trece|catorce|quince|"
        "dieciséis|diecisiete|dieciocho|diecinueve|veinte"
    ),
    "de": _split(
        "null|eins|zwei|drei|vier|fünf|sechs|sieben|acht|neun|zehn|elf|zwölf|dreizehn|vierzehn|"
        "fünfzehn|sechzehn|siebzehn|achtzehn|neunzehn|zwanzig"
    ),
}
# Mandarin, Cantonese and Japanese numbers are compositional: 0..10 plus "ten + unit" and "two ten".
_HANZI_0_10 = ("零", "一", "二", "三", "四", "五", "六", "七", "八", "九", "十")
_KANA_0_10 = ("ぜろ", "いち", "に", "さん", "よん", "ご", "ろく", "なな", "はち", "きゅう", "じゅう")

# --------------------------------------------------------------------------- templates

_TRIP: dict[str, str] = {
    "en": "{name} goes {place} on {day}.",
    "zh": "{name}{day}去{place}。",
    "yue": "{name}{day}去{place}。",
    "fr": "{name} va {place} {day}.",
    "it": "{name} va {place} {day}.",
    "es": "{name} va {place} el {day}.",
    "de": "{name} geht am {day} {place}.",
    "ja": "{name} は {day} に {place} へ いきます。",
}

_WEATHER: dict[str, str] = {
    "en": "It is {weather} in {city} today.",
    "zh": "今天{city}{weather}。",
    "yue": "今日{city}{weather}。",
    "fr": "Aujourd'hui, {weather} à {city}.",
    "it": "Oggi a {city} {weather}.",
    "es": "Hoy {weather} en {city}.",
    "de": "Heute {weather} in {city}.",
    "ja": "きょう の {city} は {weather}。",
}

_SUM_QUESTION: dict[str, str] = {
    "en": "What is {a} plus {b}?",
    "zh": "{a}加{b}等于几？",
    "yue": "{a}加{b}係幾多？",
    "fr": "Combien font {a} plus {b} ?",
    "it": "Quanto fa {a} più {b}?",
    "es": "¿Cuánto es {a} más {b}?",
    "de": "Was ist {a} plus {b}?",
    "ja": "{a} たす {b} は いくつ です か？",
}

_SUM_ANSWER: dict[str, str] = {
    "en": "{a} plus {b} is {c}.",
    "zh": "{a}加{b}等于{c}。",
    "yue": "{a}加{b}係{c}。",
    "fr": "{a} plus {b} égale {c}.",
    "it": "{a} più {b} fa {c}.",
    "es": "{a} más {b} es igual a {c}.",
    "de": "{a} plus {b} ist {c}.",
    "ja": "{a} たす {b} は {c} です。",
}

_NEXT_DAY_QUESTION: dict[str, str] = {
    "en": "What day comes after {day}?",
    "zh": "{day}之后是星期几？",
    "yue": "{day}嘅下一日係星期幾？",
    "fr": "Quel jour vient après {day} ?",
    "it": "Che giorno viene dopo {day}?",
    "es": "¿Qué día viene después del {day}?",
    "de": "Welcher Tag kommt nach {day}?",
    "ja": "{day} の つぎ は なんようび です か？",
}

_NEXT_DAY_ANSWER: dict[str, str] = {
    "en": "The day after {day} is {next}.",
    "zh": "{day}之后是{next}。",
    "yue": "{day}嘅下一日係{next}。",
    "fr": "Après {day}, c'est {next}.",
    "it": "Dopo {day} viene {next}.",
    "es": "Después del {day} viene el {next}.",
    "de": "Nach {day} kommt {next}.",
    "ja": "{day} の つぎ は {next} です。",
}

# Slot vocabularies of each family, in key order: key = "family:slot0:slot1:...".
_SLOTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "trip": (NAME_IDS, PLACE_IDS, DAY_IDS),
    "weather": (WEATHER_IDS, CITY_IDS),
    "sum": (OPERAND_IDS, OPERAND_IDS),
    "next_day": (DAY_IDS,),
}

# --------------------------------------------------------------------------- helpers


def _check_language(language: str) -> None:
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; expected one of {LANGUAGES}")


def _parse(key: str) -> tuple[str, tuple[str, ...]]:
    """Split a key into (family, slot values), validating every part."""
    family, *parts = key.split(":")
    if family not in _SLOTS:
        raise ValueError(f"unknown family {family!r} in key {key!r}; expected one of {tuple(_SLOTS)}")
    vocabularies = _SLOTS[family]
    if len(parts) != len(vocabularies):
        raise ValueError(f"key {key!r} needs {len(vocabularies)} values after {family!r}, got {len(parts)}")
    for value, vocabulary in zip(parts, vocabularies, strict=True):
        if value not in vocabulary:
            raise ValueError(f"unknown value {value!r} in key {key!r}; expected one of {vocabulary}")
    return family, tuple(parts)


def _pick(lexicon: dict[str, tuple[str, ...]], ids: tuple[str, ...], item: str, language: str) -> str:
    return lexicon[language][ids.index(item)]


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def split_of(key: str, heldout_fraction: float) -> str:
    """Stable split of a meaning key (independent of the seed, so dev/test never move)."""
    bucket = int(hashlib.sha256(f"split:{key}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if bucket < heldout_fraction else "dev" if bucket < 2 * heldout_fraction else "train"


def _rng(seed: int, key: str, language: str) -> random.Random:
    # A str seed is hashed with SHA-512 by `random`, so this is stable across processes.
    return random.Random(f"{seed}:{key}:{language}")


def _next_day(day: str) -> str:
    return DAY_IDS[(DAY_IDS.index(day) + 1) % len(DAY_IDS)]


def _day(day: str, language: str) -> str:
    return _pick(_DAYS, DAY_IDS, day, language)


def _sum_text(template: dict[str, str], a: int, b: int, c: int, language: str) -> str:
    words = {"a": number_word(a, language), "b": number_word(b, language), "c": number_word(c, language)}
    return _capitalize(template[language].format(**words))


def _next_day_answer_text(day: str, next_day: str, language: str) -> str:
    text = _NEXT_DAY_ANSWER[language].format(day=_day(day, language), next=_day(next_day, language))
    return _capitalize(text)


def _render_text(family: str, parts: tuple[str, ...], language: str) -> str:
    if family == "trip":
        name, place, day = parts
        text = _TRIP[language].format(
            name=_pick(_NAMES, NAME_IDS, name, language),
            place=_pick(_PLACES, PLACE_IDS, place, language),
            day=_day(day, language),
        )
    elif family == "weather":
        weather, city = parts
        text = _WEATHER[language].format(
            weather=_pick(_WEATHERS, WEATHER_IDS, weather, language),
            city=_pick(_CITIES, CITY_IDS, city, language),
        )
    elif family == "sum":
        a, b = (int(p) for p in parts)
        words = {"a": number_word(a, language), "b": number_word(b, language)}
        text = _SUM_QUESTION[language].format(**words)
    else:  # next_day
        text = _NEXT_DAY_QUESTION[language].format(day=_day(parts[0], language))
    return _capitalize(text)


def _question(key: str, language: str) -> tuple[str, tuple[str, ...]]:
    _check_language(language)
    family, parts = _parse(key)
    if family not in QUESTION_FAMILIES:
        raise ValueError(f"key {key!r} is a {family!r} statement, not a question")
    return family, parts


# --------------------------------------------------------------------------- public API


def statement_keys() -> list[str]:
    """All meaning keys of the statement families (trip, weather), in a fixed order."""
    trips = [f"trip:{n}:{p}:{d}" for n in NAME_IDS for p in PLACE_IDS for d in DAY_IDS]
    weathers = [f"weather:{w}:{c}" for w in WEATHER_IDS for c in CITY_IDS]
    return trips + weathers


def question_keys() -> list[str]:
    """All meaning keys of the question families (sum, next_day), in a fixed order."""
    sums = [f"sum:{a}:{b}" for a in OPERAND_IDS for b in OPERAND_IDS]
    return sums + [f"next_day:{d}" for d in DAY_IDS]


def render(key: str, language: str) -> Sentence:
    """The sentence expressing ``key`` in ``language``."""
    _check_language(language)
    family, parts = _parse(key)
    return Sentence(key=key, family=family, language=language, text=_render_text(family, parts, language))


def answer(key: str, language: str) -> str:
    """The correct answer to a question key, as a short full sentence in ``language``."""
    family, parts = _question(key, language)
    if family == "sum":
        a, b = (int(p) for p in parts)
        return _sum_text(_SUM_ANSWER, a, b, a + b, language)
    return _next_day_answer_text(parts[0], _next_day(parts[0]), language)


def corrupt(key: str, language: str, seed: int, allowed: Callable[[str], bool] | None = None) -> str:
    """The statement with exactly one content word swapped for another of the same kind.

    allowed(changed_key) limits the result to some meanings (e.g. those of the same split): the slot
    drawn first is tried first, then the others. Without it, the draw is one slot, then one value.
    """
    _check_language(language)
    family, parts = _parse(key)
    if family not in STATEMENT_FAMILIES:
        raise ValueError(f"key {key!r} is a {family!r} question; corrupt() takes statement keys")
    rng = _rng(seed, key, language)
    first = rng.randrange(len(parts))
    for slot in [first, *(s for s in range(len(parts)) if s != first)]:
        options = [
            changed
            for value in _SLOTS[family][slot]
            if value != parts[slot]
            for changed in [parts[:slot] + (value,) + parts[slot + 1 :]]
            if allowed is None or allowed(":".join((family, *changed)))
        ]
        if options:
            return _render_text(family, rng.choice(options), language)
    raise ValueError(f"no one-word change of {key!r} is allowed")


def number_word(n: int, language: str) -> str:
    """``n`` (0..20) written in words in ``language`` (Japanese in kana)."""
    _check_language(language)
    if not 0 <= n <= MAX_NUMBER:
        raise ValueError(f"number_word supports 0..{MAX_NUMBER}, got {n}")
    if language in _NUMBERS_0_20:
        return _NUMBERS_0_20[language][n]
    units = _KANA_0_10 if language == "ja" else _HANZI_0_10
    if n <= 10:
        return units[n]
    tens, unit = divmod(n, 10)
    return (units[tens] if tens > 1 else "") + units[10] + (units[unit] if unit else "")
