"""The synthetic corpus: real audio made here (espeak-ng speech, sox sounds), no downloads.

    python scripts/prepare_data.py recipe=synthetic output_dir=DIR [recipe.size=2.0] [recipe.seed=1]

Writes DIR/audio/<split>/*.wav (16 kHz mono), DIR/{pretrain,sft,dpo}/{train,dev,test}.jsonl,
DIR/pretrain/test_unseen_voices.jsonl and DIR/summary.json. Every sentence comes from a template with a known meaning (synthetic_text), so
transcripts, translations, answers to spoken questions and near-miss transcripts are all known. Splits are
drawn by meaning key, so no sentence crosses train/dev/test in any language. The whole corpus is a
pure function of (size, seed): the plan is drawn in one process, then rendered in parallel.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from data_recipes import synthetic_audio as sa
from data_recipes import synthetic_text as st
from data_recipes.synthetic_records import LABELS, Clip, build_records, check_recipe
from data_recipes.synthetic_text import split_of
from lalm.config.data import SyntheticRecipeConfig
from lalm.data.audio import write_audio
from lalm.data.manifest import write_manifest

SPLITS = ("train", "dev", "test")
# The test split's sentences spoken by voices no other split uses: does the model hear speech, or the
# training voices? Pretraining records only (ASR and the other speech tasks), for evaluation.
UNSEEN_SPLIT = "test_unseen_voices"
# Clips per split at size=1.0 (dev and test get a tenth of train each).
TRAIN_COUNTS = {"speech": 2400, "question": 600, "sound": 400, "mix": 160}
# espeak-ng voice variants by gender (those whose variant file states one); whisper variants keep the
# speaker's gender. UNSEEN_VOICES never speak in train, dev or test: only in UNSEEN_SPLIT.
VOICES = {
    "male": ("m1", "m2", "m3", "m4", "m5", "m6", "Andy", "Lee", "Denis", "Diogo", "Henrique", "Hugo")
    + ("Marco", "antonio", "michel", "miguel", "sandro"),
    "female": ("f1", "f2", "f3", "f4", "Alicia", "Andrea", "Annie", "anika", "aunty", "belinda")
    + ("grandma", "steph", "steph2"),
}
UNSEEN_VOICES = {"male": ("m7", "m8", "travis", "victor"), "female": ("f5", "linda", "steph3")}
WHISPER_VOICE = {"male": "whisper", "female": "whisperf"}
# Words per minute and pitch range (0-99) per speaking style / gender.
STYLE_SPEED = {"neutral": (150, 185), "fast": (225, 260), "slow": (105, 125), "whispered": (150, 185)}
GENDER_PITCH = {"male": (20, 50), "female": (50, 80)}
SOUND_CLASSES = ("tone", "chirp", "siren", "white", "pink", "brown", "beeps", "chord")
CHORDS = {"major": (261.63, 329.63, 392.00), "minor": (261.63, 311.13, 392.00)}
SPEECH_TASKS = ("s2tt", "lid", "gender", "style")  # each utterance gets asr plus one of these


def _voice(rng: random.Random, style: str, voices: dict[str, tuple[str, ...]] = VOICES) -> dict[str, Any]:
    gender = rng.choice(("male", "female"))
    variant = WHISPER_VOICE[gender] if style == "whispered" else rng.choice(voices[gender])
    return {
        "gender": gender,
        "style": style,
        "variant": variant,
        "speed": rng.randint(*STYLE_SPEED[style]),
        "pitch": rng.randint(*GENDER_PITCH[gender]),
    }


def _language(rng: random.Random, cfg: SyntheticRecipeConfig) -> str:
    return "en" if rng.random() < cfg.english_fraction else rng.choice(st.LANGUAGES[1:])


def _sound_info(rng: random.Random, sound: str) -> dict[str, Any]:
    seconds = round(rng.uniform(1.0, 2.5), 2)
    if sound == "tone":
        hz = rng.choice((220, 440, 660, 880, 1320))
        level = "low" if hz < 500 else "high" if hz > 800 else "medium"
        return {
            "sound": sound,
            "seconds": seconds,
            "hz": hz,
            "caption": {"en": f"A steady {level}-pitched tone.", "zh": "一个稳定的纯音。"},
        }
    if sound == "chirp":
        up = rng.random() < 0.5
        return {
            "sound": sound,
            "seconds": seconds,
            "start": 300 if up else 2000,
            "end": 2000 if up else 300,
            "caption": {
                "en": f"A tone sweeping {'upward' if up else 'downward'}.",
                "zh": f"一个音调{'上升' if up else '下降'}的扫频音。",
            },
        }
    if sound == "siren":
        cycles = rng.randint(2, 3)
        return {
            "sound": sound,
            "cycles": cycles,
            "caption": {"en": "A siren wailing up and down.", "zh": "警笛声忽高忽低。"},
        }
    if sound == "beeps":
        count = rng.randint(1, 5)
        return {
            "sound": sound,
            "count": count,
            "hz": rng.choice((700, 1000, 1400)),
            "caption": {
                "en": f"{st.number_word(count, 'en').capitalize()} short beeps.",
                "zh": f"{st.number_word(count, 'zh')}声短促的哔哔声。",
            },
        }
    if sound == "chord":
        quality = rng.choice(tuple(CHORDS))
        return {
            "sound": sound,
            "seconds": seconds,
            "quality": quality,
            "caption": {
                "en": f"A {quality} chord played on a synthesizer.",
                "zh": f"合成器演奏的{'大' if quality == 'major' else '小'}三和弦。",
            },
        }
    return {
        "sound": sound,
        "seconds": seconds,
        "caption": {"en": f"Steady {sound} noise.", "zh": f"持续的{LABELS[sound]['zh']}。"},
    }


def plan_clips(cfg: SyntheticRecipeConfig) -> list[Clip]:
    """Every clip of the corpus, drawn from one seeded generator (deterministic)."""
    rng = random.Random(cfg.seed)
    keys = {kind: {s: [] for s in SPLITS} for kind in ("statement", "question")}
    for kind, all_keys in (("statement", st.statement_keys()), ("question", st.question_keys())):
        for key in all_keys:
            keys[kind][split_of(key, cfg.heldout_fraction)].append(key)
    clips = []
    for split in SPLITS:
        scale = cfg.size * (1.0 if split == "train" else 0.1)
        counts = {kind: max(4, round(n * scale)) for kind, n in TRAIN_COUNTS.items()}
        for i in range(counts["speech"]):
            key, language = rng.choice(keys["statement"][split]), _language(rng, cfg)
            info = {"key": key, "language": language, **_voice(rng, rng.choice(tuple(STYLE_SPEED)))}
            clips.append(Clip(f"{split}-speech{i:05d}", split, "speech", info))
        for i in range(counts["question"]):
            key, language = rng.choice(keys["question"][split]), _language(rng, cfg)
            clips.append(
                Clip(
                    f"{split}-question{i:05d}",
                    split,
                    "question",
                    {"key": key, "language": language, **_voice(rng, "neutral")},
                )
            )
        for i in range(counts["sound"]):
            info = _sound_info(rng, SOUND_CLASSES[i % len(SOUND_CLASSES)])
            clips.append(Clip(f"{split}-sound{i:05d}", split, "sound", info))
        for i in range(counts["mix"]):
            key, language = rng.choice(keys["statement"][split]), _language(rng, cfg)
            info = {
                "key": key,
                "language": language,
                **_voice(rng, "neutral"),
                "noise": rng.choice(("white", "pink", "brown")),
                "snr_db": rng.choice((5, 10, 15)),
            }
            clips.append(Clip(f"{split}-mix{i:05d}", split, "mix", info))
    clips += _unseen_voice_clips(rng, cfg, keys["statement"]["test"])
    for clip in clips:
        if "key" in clip.info:
            clip.info["text"] = st.render(clip.info["key"], clip.info["language"]).text
    return clips


def _unseen_voice_clips(rng: random.Random, cfg: SyntheticRecipeConfig, test_keys: list[str]) -> list[Clip]:
    """As many utterances as the test split has, of its sentences, in voices kept out of training
    (drawn after every other clip, so this split's size changes no other clip)."""
    clips = []
    for i in range(max(4, round(TRAIN_COUNTS["speech"] * cfg.size * 0.1))):
        key, language = rng.choice(test_keys), _language(rng, cfg)
        style = rng.choice(("neutral", "fast", "slow"))  # whispering has its own (seen) variants
        info = {"key": key, "language": language, **_voice(rng, style, UNSEEN_VOICES)}
        clips.append(Clip(f"unseen-speech{i:05d}", UNSEEN_SPLIT, "speech", info))
    return clips


def _render_sound(info: dict[str, Any]):  # noqa: ANN202 - np.ndarray
    sound = info["sound"]
    if sound == "tone":
        return sa.tone(info["seconds"], info["hz"])
    if sound == "chirp":
        return sa.chirp(info["seconds"], info["start"], info["end"])
    if sound == "siren":
        return sa.siren(info["cycles"], 600, 1300)
    if sound == "beeps":
        return sa.beeps(info["count"], info["hz"])
    if sound == "chord":
        return sa.chord(info["seconds"], CHORDS[info["quality"]])
    return sa.noise(info["seconds"], sound)


def _speech(info: dict[str, Any], max_seconds: float):  # noqa: ANN202 - np.ndarray
    speed = info["speed"]
    for _ in range(4):  # speak faster until the clip fits the encoder window
        wave = sa.speak(info["text"], info["language"], info["variant"], speed, info["pitch"])
        if len(wave) <= max_seconds * sa.SAMPLE_RATE:
            break
        speed = int(speed * 1.25)
    return wave


def render_clip(clip: Clip, output_dir: str, max_seconds: float) -> tuple[str, float]:
    """Synthesise one clip to disk; returns (clip id, duration in seconds)."""
    info = clip.info
    if clip.kind == "sound":
        wave = sa.normalise(_render_sound(info))
    elif clip.kind == "mix":
        speech = _speech(info, max_seconds)
        wave = sa.mix_at_snr(speech, sa.noise(2.0, info["noise"]), info["snr_db"])
    else:
        wave = sa.normalise(_speech(info, max_seconds))
    return clip.id, write_audio(Path(output_dir) / clip.relpath, wave)


def render_all(clips: list[Clip], output_dir: Path, cfg: SyntheticRecipeConfig) -> None:
    args = ([c for c in clips], [str(output_dir)] * len(clips), [cfg.max_clip_seconds] * len(clips))
    if cfg.num_workers <= 1:
        durations = dict(map(render_clip, *args))
    else:
        with ProcessPoolExecutor(cfg.num_workers) as pool:
            durations = dict(pool.map(render_clip, *args, chunksize=32))
    for clip in clips:
        clip.info["duration"] = round(durations[clip.id], 6)


NOISE_SOUNDS = ("white", "pink", "brown")


def write_noise_manifest(clips: list[Clip], output_dir: Path) -> None:
    """DIR/noise/train.jsonl: the train split's noise recordings, {"audio": path} a line, for additive
    noise augmentation (`stage.augment.noise_manifest`)."""
    noises = [
        c for c in clips if c.split == "train" and c.kind == "sound" and c.info["sound"] in NOISE_SOUNDS
    ]
    write_manifest(output_dir / "noise" / "train.jsonl", [{"audio": f"../{c.relpath}"} for c in noises])


def prepare(cfg: SyntheticRecipeConfig, output_dir: str | Path) -> dict[str, Any]:
    """Generate the whole corpus into `output_dir`; returns (and writes) its summary."""
    start = time.time()
    output_dir = Path(output_dir)
    check_recipe(cfg)
    clips = plan_clips(cfg)
    render_all(clips, output_dir, cfg)
    counts: Counter[str] = Counter()
    for stage, by_split in build_records(clips, cfg).items():
        for split, records in by_split.items():
            write_manifest(output_dir / stage / f"{split}.jsonl", records)
            counts[f"{stage}/{split}"] = len(records)
    write_noise_manifest(clips, output_dir)
    summary = {
        "recipe": "synthetic",
        "size": cfg.size,
        "seed": cfg.seed,
        "clips": len(clips),
        "audio_hours": round(sum(c.info["duration"] for c in clips) / 3600, 4),
        "records": dict(sorted(counts.items())),
        "seconds": round(time.time() - start, 1),
    }
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
