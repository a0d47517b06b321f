"""Manifest records of the synthetic corpus, built from rendered clips whose facts are known.

Each clip's `info` (meaning key, language, voice, sound parameters, duration) becomes targets:
pretrain (one record per task), SFT (chat mode: spoken questions and their answers; analysis mode: a
text instruction about speech, sound or noisy speech; some multi-turn), and DPO (the correct response
vs a wrong one: a transcript with one word swapped, a wrong language label, or the right answer to a
spoken question but in another language than it was asked in).
Choices are seeded per clip, so records are deterministic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from data_recipes import synthetic_text as st
from lalm.config.data import SyntheticRecipeConfig
from lalm.data.prompts import PROMPT_LANGUAGES, language_name, select_prompt

Record = dict[str, Any]
LANGUAGE_CODES = st.LANGUAGES  # the languages the synthetic corpus speaks
SPEECH_TASKS = ("s2tt", "lid", "gender", "style")  # each utterance: asr plus one of these
LABELS: dict[str, dict[str, str]] = {
    "male": {"en": "male", "zh": "男性"},
    "female": {"en": "female", "zh": "女性"},
    "neutral": {"en": "neutral", "zh": "平静"},
    "fast": {"en": "fast", "zh": "语速快"},
    "slow": {"en": "slow", "zh": "语速慢"},
    "whispered": {"en": "whispered", "zh": "耳语"},
    "tone": {"en": "a pure tone", "zh": "纯音"},
    "chirp": {"en": "a chirp", "zh": "扫频音"},
    "siren": {"en": "a siren", "zh": "警笛声"},
    "white": {"en": "white noise", "zh": "白噪声"},
    "pink": {"en": "pink noise", "zh": "粉红噪声"},
    "brown": {"en": "brown noise", "zh": "褐噪声"},
    "beeps": {"en": "beeps", "zh": "哔哔声"},
    "chord": {"en": "a musical chord", "zh": "和弦"},
}


@dataclass
class Clip:
    """One audio file to render; `info` holds the facts that become targets."""

    id: str
    split: str
    kind: str  # speech | question | sound | mix
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def relpath(self) -> str:
        return f"audio/{self.split}/{self.id}.wav"


def _ref(clip: Clip) -> dict[str, Any]:
    # Manifests sit one folder below the corpus root: DIR/<stage>/<split>.jsonl.
    return {"path": f"../{clip.relpath}", "duration": clip.info["duration"]}


def _user(clip: Clip, text: str | None = None, text_first: bool = False) -> Record:
    items: list[Record] = [{"type": "audio", "audio": _ref(clip)}]
    if text is not None:
        items.insert(0 if text_first else 1, {"type": "text", "text": text})
    return {"role": "user", "content": items}


def _assistant(text: str) -> Record:
    return {"role": "assistant", "content": text}


@dataclass
class _Facts:
    """What can be asked about one clip: task -> (instruction, answer) in a prompt language."""

    clip: Clip
    seed: int
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.seed}:{self.clip.id}")

    def target_language(self) -> str:
        source = self.clip.info["language"]
        return self.rng.choice(LANGUAGE_CODES[1:]) if source == "en" else "en"

    def answer(self, task: str, prompt_language: str, target_language: str | None = None) -> str:
        info = self.clip.info
        if task == "asr":
            return info["text"]
        if task == "s2tt":
            return st.render(info["key"], target_language).text
        if task == "lid":
            return language_name(info["language"], prompt_language)
        if task in ("gender", "style", "sound"):
            return LABELS[info[task]][prompt_language]
        if task == "count":
            return st.number_word(info["count"], prompt_language)
        if task == "caption":
            return self.caption(prompt_language)
        raise ValueError(f"no answer for task {task!r}")

    def caption(self, prompt_language: str) -> str:
        info = self.clip.info
        if "caption" in info:
            return info["caption"][prompt_language]
        noise = LABELS[info["noise"]][prompt_language]
        if prompt_language == "zh":
            return f"一位{'男' if info['gender'] == 'male' else '女'}性在{noise}中说：“{info['text']}”"
        return f'A {"man" if info["gender"] == "male" else "woman"} saying "{info["text"]}" over {noise}.'

    def ask(self, task: str, key: str) -> tuple[str, str, Record]:
        """(instruction, answer, pretrain fields) for `task`, prompt language drawn per clip."""
        prompt_language = self.rng.choice(PROMPT_LANGUAGES)
        language = self.clip.info.get("language")
        target = self.target_language() if task == "s2tt" else None
        text = select_prompt(
            task,
            seed=self.seed,
            key=key,
            language=language,
            target_language=target,
            prompt_language=prompt_language,
        )
        answer = self.answer(task, prompt_language, target)
        fields = {"task": task, "language": language, "target_language": target}
        if task not in ("asr", "s2tt"):  # the label is written in the prompt's language
            fields["prompt_language"] = prompt_language
        return text, answer, fields


def _tasks(clip: Clip, index: int) -> tuple[str, ...]:
    """Pretraining tasks of a clip: an utterance gets ASR plus one other task in rotation, except in the
    test split, where it gets all of them: 4x the held-out examples of language ID, gender, style and
    translation, so the reported accuracies are less noisy (test records are never trained on)."""
    if clip.kind == "speech":
        return (
            ("asr", *SPEECH_TASKS)
            if clip.split.startswith("test")
            else ("asr", SPEECH_TASKS[index % len(SPEECH_TASKS)])
        )
    if clip.kind == "question":
        return ("asr",)
    if clip.kind == "mix":
        return ("asr", "caption")
    return ("sound", "caption", "count") if clip.info["sound"] == "beeps" else ("sound", "caption")


def pretrain_records(clips: list[Clip], seed: int) -> list[Record]:
    records = []
    for index, clip in enumerate(clips):
        facts = _Facts(clip, seed)
        for task in _tasks(clip, index):
            _, answer, fields = facts.ask(task, f"{clip.id}-{task}")
            records.append({"id": f"{clip.id}-{task}", "audio": _ref(clip), **fields, "text": answer})
    return records


def _analysis_tasks(clip: Clip) -> tuple[str, ...]:
    """Tasks an SFT instruction may ask about `clip`; ASR twice, so a third of speech turns are ASR."""
    return ("asr", "asr", *SPEECH_TASKS) if clip.kind == "speech" else _tasks(clip, 0)  # non-speech: fixed


def _analysis(clip: Clip, index: int, seed: int) -> Record:
    facts = _Facts(clip, seed)
    # Drawn per clip: a rotation by index aliased with _tasks' own rotation and never asked for lid.
    task = facts.rng.choice(_analysis_tasks(clip))
    question, answer, _ = facts.ask(task, f"{clip.id}-sft-{task}")
    messages = [_user(clip, question, text_first=index % 4 == 0), _assistant(answer)]
    if clip.kind == "speech" and index % 3 == 0:  # multi-turn: a follow-up about the same audio
        follow = "s2tt" if task == "asr" else "asr"
        question, answer, _ = facts.ask(follow, f"{clip.id}-sft-{follow}")
        messages += [{"role": "user", "content": question}, _assistant(answer)]
    return {"id": f"{clip.id}-sft", "mode": "analysis", "task": task, "messages": messages}


def _chat(clips: list[Clip], index: int) -> Record:
    """Voice chat: the question is spoken; two spoken questions make a two-turn conversation."""
    messages = []
    for clip in clips:
        messages += [_user(clip), _assistant(st.answer(clip.info["key"], clip.info["language"]))]
    return {"id": f"{clips[0].id}-chat{index}", "mode": "chat", "task": "chat", "messages": messages}


def sft_records(clips: list[Clip], seed: int) -> list[Record]:
    questions = [c for c in clips if c.kind == "question"]
    records = [_chat([clip], 0) for clip in questions]
    records += [_chat(questions[i : i + 2], 2) for i in range(0, len(questions) - 1, 4)]
    analysed = [c for c in clips if c.kind in ("speech", "sound", "mix")]
    records += [_analysis(clip, index, seed) for index, clip in enumerate(analysed)]
    random.Random(seed).shuffle(records)  # chat and analysis interleaved in the file too
    return records


def dpo_records(
    clips: list[Clip], seed: int, heldout_fraction: float = 0.1, asr_languages: tuple[str, ...] = ()
) -> list[Record]:
    """Every utterance gives a pair, transcript (even clip index; only in `asr_languages`, () = all) or
    language label (odd); every spoken question an answer-language pair.

    Training pairs never reject a held-out sentence: a swapped word of a train clip's transcript must
    give another train meaning, else DPO would push down dev/test sentences before they are scored."""
    unknown = sorted(set(asr_languages) - set(LANGUAGE_CODES))
    if unknown:
        raise ValueError(
            f"dpo_asr_languages has unknown languages {unknown}; choose from {list(LANGUAGE_CODES)}"
        )

    def in_train(key: str) -> bool:
        return st.split_of(key, heldout_fraction) == "train"

    records = []
    for index, clip in enumerate(clips):
        info, facts = clip.info, _Facts(clip, seed)
        if clip.kind == "question":
            # Rejected: the right answer in another language. A wrong sum would make held-out pairs a
            # test of arithmetic on unseen sums, which a model trained for minutes cannot generalise;
            # answering in the asker's language is a preference DPO can learn, and it needs the audio.
            chosen = st.answer(info["key"], info["language"])
            others = [st.answer(info["key"], c) for c in LANGUAGE_CODES if c != info["language"]]
            rejected = facts.rng.choice([text for text in others if text != chosen])
            records.append(
                {
                    "id": f"{clip.id}-dpo",
                    "mode": "chat",
                    "task": "chat",
                    "prompt": [_user(clip)],
                    "chosen": chosen,
                    "rejected": rejected,
                }
            )
        elif clip.kind == "speech":
            task = "asr" if index % 2 == 0 else "lid"
            if task == "asr" and asr_languages and info["language"] not in asr_languages:
                continue
            question, chosen, _ = facts.ask(task, f"{clip.id}-dpo-{task}")
            if task == "asr":
                allowed = in_train if clip.split == "train" else None
                try:
                    rejected = st.corrupt(info["key"], info["language"], seed, allowed)
                except ValueError:  # no one-word change stays in train (only with a large heldout_fraction)
                    continue
            else:
                other = facts.rng.choice([c for c in LANGUAGE_CODES if c != info["language"]])
                rejected = language_name(
                    other, "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in chosen) else "en"
                )
            records.append(
                {
                    "id": f"{clip.id}-dpo",
                    "mode": "analysis",
                    "task": task,
                    "prompt": [_user(clip, question)],
                    "chosen": chosen,
                    "rejected": rejected,
                }
            )
    return records


def check_recipe(cfg: SyntheticRecipeConfig) -> None:
    """Config mistakes the records would hit, raised before any audio is rendered."""
    unknown = sorted(set(cfg.dpo_asr_languages) - set(LANGUAGE_CODES))
    if unknown:
        raise ValueError(
            f"recipe.dpo_asr_languages has unknown languages {unknown}; choose from {list(LANGUAGE_CODES)}"
        )


def build_records(clips: list[Clip], cfg: SyntheticRecipeConfig) -> dict[str, dict[str, list[Record]]]:
    by_split: dict[str, list[Clip]] = {}
    for clip in clips:
        by_split.setdefault(clip.split, []).append(clip)
    builders = {
        "pretrain": pretrain_records,
        "sft": sft_records,
        "dpo": lambda c, seed: dpo_records(c, seed, cfg.heldout_fraction, tuple(cfg.dpo_asr_languages)),
    }
    # The unseen-voices split is for evaluation: pretraining records only.
    return {
        stage: {
            split: build(c, cfg.seed)
            for split, c in by_split.items()
            if stage == "pretrain" or not split.startswith("test_")
        }
        for stage, build in builders.items()
    }
