"""Natural-language instruction prompts for audio-language-model pretraining.

Qwen-Audio conditioned its decoder on a hierarchy of task tags (``<|transcribe|><|en|>`` and so on).
The Qwen2-Audio report (arXiv 2407.10759) replaced those tags with plain natural-language instructions:
the model sees the same kind of text it will later receive from users, the task vocabulary is no longer
a fixed token inventory, and varied phrasings keep the model from latching onto one surface form.

This module holds a small library of such instructions, in English and Simplified Chinese, for each
pretraining task, and a deterministic selector.  Selection hashes ``f"{seed}:{task}:{key}"`` with
SHA-256 (never Python's salted ``hash()``), so a given example receives the same prompt in every process
and every run, while different examples spread over the whole library.

Templates may contain only two placeholders: ``{language}`` (language of the speech) and
``{target_language}`` (language to translate into).  Both are filled with the language's name written in
the prompt's own language, e.g. "French" in an English prompt and "法语" in a Chinese one.
"""

from __future__ import annotations

import hashlib
from string import Formatter

TASKS: tuple[str, ...] = ("asr", "s2tt", "lid", "gender", "style", "sound", "caption", "count")
PROMPT_LANGUAGES: tuple[str, ...] = ("en", "zh")
LANGUAGE_CODES: tuple[str, ...] = ("en", "zh", "yue", "fr", "it", "es", "de", "ja")

PLACEHOLDERS: frozenset[str] = frozenset({"language", "target_language"})

LANGUAGE_NAMES: dict[str, dict[str, str]] = {
    "en": {"en": "English", "zh": "英语"},
    "zh": {"en": "Chinese", "zh": "中文"},
    "yue": {"en": "Cantonese", "zh": "粤语"},
    "fr": {"en": "French", "zh": "法语"},
    "it": {"en": "Italian", "zh": "意大利语"},
    "es": {"en": "Spanish", "zh": "西班牙语"},
    "de": {"en": "German", "zh": "德语"},
    "ja": {"en": "Japanese", "zh": "日语"},
}


class UnknownTaskError(ValueError):
    """Raised when a task name is not one of :data:`TASKS`."""

    def __init__(self, task: str) -> None:
        super().__init__(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
        self.task = task


PROMPTS: dict[str, dict[str, tuple[str, ...]]] = {
    "asr": {
        "en": (
            "Transcribe this {language} speech.",
            "Please write down exactly what is said in this {language} recording.",
            "Convert the {language} speech in this audio into text.",
            "What does the speaker say? Give the {language} transcript.",
            "Produce a verbatim {language} transcription of the audio.",
            "Listen to this {language} clip and transcribe it word for word.",
            "Write out the spoken {language} content of this recording.",
            "Recognize the {language} speech and output it as text.",
            "Give me a written transcript of this {language} utterance.",
            "Transcribe the following {language} audio into written form.",
            "Transcribe the speech.",
            "What is being said in this audio? Write it down.",
            "Please transcribe the audio clip.",
            "Turn the spoken words in this recording into text.",
            "Write down everything the speaker says.",
            "Provide a transcript of this recording.",
            "Convert this speech to text.",
            "Listen carefully and transcribe what you hear.",
            "Give the exact words spoken in this clip.",
            "Detect the speech in the audio and write it out as text.",
            "Could you transcribe this recording for me?",
            "Output the transcription of the spoken content.",
        ),
        "zh": (
            "请将这段{language}语音转写成文字。",
            "把这段{language}录音的内容逐字写下来。",
            "请识别这段{language}语音，并输出对应的文字。",
            "说话人用{language}说了什么？请给出转写文本。",
            "请逐字转写以下{language}音频。",
            "听这段{language}音频，把说的话写成文字。",
            "将音频中的{language}语音内容转换为文本。",
            "请给出这段{language}讲话的文字记录。",
            "这段{language}录音里说了些什么？请原样写出。",
            "请把这段{language}口语准确地转写出来。",
            "请转写这段语音。",
            "这段音频里说了什么？请写下来。",
            "把录音中的话转换成文字。",
            "请将语音内容转写为文本。",
            "请逐字记录说话人所说的内容。",
            "听一听这段音频，然后把内容转写出来。",
            "识别这段语音并输出文字。",
            "请给出这段录音的完整文字稿。",
            "把你听到的话原封不动地写出来。",
            "帮我把这段音频转成文字。",
            "这段话的文字内容是什么？",
            "请将这段讲话转录成文字。",
        ),
    },
    "s2tt": {
        "en": (
            "Translate this speech into {target_language}.",
            "Listen to the audio and give its {target_language} translation.",
            "What does the speaker say? Answer in {target_language}.",
            "Render the spoken content of this clip in {target_language}.",
            "Translate the {language} speech into {target_language}.",
            "Please provide a {target_language} translation of this recording.",
            "Convert what is said here into written {target_language}.",
            "Give the meaning of this {language} utterance in {target_language}.",
            "Translate the following audio into {target_language} text.",
            "How would you say what the speaker says in {target_language}?",
            "Write a {target_language} translation of the speech.",
            "Translate this {language} recording into {target_language}, please.",
            "Listen carefully and translate the speech to {target_language}.",
            "Express the content of this audio in {target_language}.",
            "Provide the {target_language} version of what is spoken.",
            "Turn this {language} speech into {target_language} text.",
            "Translate the spoken words into {target_language}.",
            "Can you translate this clip into {target_language}?",
            "Give a faithful {target_language} translation of the audio.",
            "From {language} speech to {target_language} text: translate this clip.",
            "Interpret the recording and write it out in {target_language}.",
            "What is the {target_language} translation of this speech?",
        ),
        "zh": (
            "请将这段语音翻译成{target_language}。",
            "听这段音频，并给出它的{target_language}译文。",
            "说话人说了什么？请用{target_language}回答。",
            "把这段{language}语音翻译成{target_language}。",
            "请提供这段录音的{target_language}翻译。",
            "将录音里说的话译成{target_language}文字。",
            "请把这段{language}讲话的意思用{target_language}表达出来。",
            "把下面这段音频翻译为{target_language}文本。",
            "这段话用{target_language}该怎么说？",
            "请写出这段语音的{target_language}译文。",
            "请将这段{language}录音译为{target_language}。",
            "仔细听，然后把语音内容翻译成{target_language}。",
            "用{target_language}表述这段音频的内容。",
            "请给出所说内容的{target_language}版本。",
            "把这段{language}语音转换成{target_language}文字。",
            "将说话内容翻译为{target_language}。",
            "你能把这段音频翻译成{target_language}吗？",
            "请忠实地把这段音频翻译成{target_language}。",
            "从{language}语音到{target_language}文本：请翻译这段音频。",
            "理解这段录音，并用{target_language}写出来。",
            "这段语音的{target_language}翻译是什么？",
            "请把听到的内容译成{target_language}。",
        ),
    },
    "lid": {
        "en": (
            "What language is spoken in this audio?",
            "Identify the language of the speech.",
            "Which language is the speaker using?",
            "In what language is this recording?",
            "Tell me the language you hear in this clip.",
            "Detect the spoken language.",
            "What language does the speaker talk in?",
            "Name the language used in this audio.",
            "Listen and determine which language is being spoken.",
            "Which language is this?",
            "Classify the language of this utterance.",
            "Recognize the language of the speaker.",
            "What is the language of this speech clip?",
            "Please identify which language this person is speaking.",
            "Can you tell what language is being used here?",
            "Determine the spoken language of the recording.",
            "Answer with the name of the language spoken in the audio.",
            "Which language do you hear?",
            "The speaker is talking in which language?",
            "Guess the language of this speech.",
            "What language is the person in this clip speaking?",
            "Label the language of the spoken content.",
        ),
        "zh": (
            "这段音频里说的是哪种语言？",
            "请识别这段语音的语种。",
            "说话人使用的是什么语言？",
            "这段录音是用什么语言录的？",
            "告诉我你在这段音频中听到的语言。",
            "检测说话所用的语言。",
            "说话人讲的是哪种语言？",
            "请说出这段音频中使用的语言。",
            "听一听，判断说的是哪种语言。",
            "这是什么语言？",
            "请对这段话的语种进行分类。",
            "识别说话人所用的语言。",
            "这段语音的语言是什么？",
            "请判断这个人在用哪种语言说话。",
            "你能听出这里用的是什么语言吗？",
            "确定这段录音的口语语种。",
            "请用语言名称回答：音频中说的是什么语言？",
            "你听到的是哪种语言？",
            "说话人在用哪种语言讲话？",
            "猜一猜这段语音是什么语言。",
            "这段音频中的人说的是什么语言？",
            "请标注这段口语内容的语种。",
        ),
    },
    "gender": {
        "en": (
            "Is the speaker male or female?",
            "What is the gender of the speaker?",
            "Does this voice belong to a man or a woman?",
            "Identify the speaker's gender.",
            "Is this a male or a female voice?",
            "Tell me whether the person speaking is a man or a woman.",
            "Classify the speaker's voice as male or female.",
            "Who is talking here, a man or a woman?",
            "Determine the gender of the person in this recording.",
            "Based on the voice, is the speaker male or female?",
            "Listen and say whether the voice is male or female.",
            "What gender does the speaker appear to be?",
            "Is it a man or a woman speaking in this clip?",
            "Recognize the gender of the voice.",
            "Answer male or female: who is speaking?",
            "Would you describe this voice as male or female?",
            "Predict the speaker's gender from the audio.",
            "Is the person in this audio a man or a woman?",
            "Gender of the speaker: male or female?",
            "Judge from the voice whether the speaker is male or female.",
            "Can you tell if the speaker is a man or a woman?",
            "Please label the speaker as male or female.",
        ),
        "zh": (
            "说话人是男性还是女性？",
            "说话人的性别是什么？",
            "这个声音是男人的还是女人的？",
            "请识别说话人的性别。",
            "这是男声还是女声？",
            "告诉我说话的人是男的还是女的。",
            "请把说话人的声音归类为男声或女声。",
            "这里说话的是男性还是女性？",
            "判断这段录音中说话人的性别。",
            "根据声音判断，说话人是男是女？",
            "听一听，这个声音是男声还是女声？",
            "从声音听来，说话人是什么性别？",
            "这段音频里说话的是男人还是女人？",
            "识别这个声音的性别。",
            "请回答男或女：是谁在说话？",
            "你会把这个声音描述为男声还是女声？",
            "根据音频预测说话人的性别。",
            "音频中的这个人是男性还是女性？",
            "说话人性别：男还是女？",
            "凭声音判断说话人是男性还是女性。",
            "你能听出说话人是男是女吗？",
            "请给说话人标注性别：男或女。",
        ),
    },
    "style": {
        "en": (
            "What is the speaking style of this speaker?",
            "Describe how the person is speaking.",
            "How would you characterize the speaker's delivery?",
            "Is the speech neutral, fast, slow, or whispered?",
            "What emotion or style does the speaker's voice convey?",
            "Identify the speaking style in this recording.",
            "In what manner is the speaker talking?",
            "Classify the style of this speech.",
            "What is the tone or mood of the speaker?",
            "How does the speaker sound: calm, hurried, slow, or whispering?",
            "Describe the speaker's vocal style in one word.",
            "What kind of speaking style do you hear?",
            "Tell me about the way this person speaks.",
            "Recognize the emotion or style of the voice.",
            "Which speaking style best fits this clip?",
            "Is the speaker whispering, speaking normally, or changing pace?",
            "Label the delivery style of the speech.",
            "What is notable about how the speaker talks?",
            "Characterize the voice: what style is it spoken in?",
            "How is the speaker speaking in this audio?",
            "Give the speaking style or emotion of the voice.",
            "What style of speech is this?",
        ),
        "zh": (
            "说话人的说话风格是怎样的？",
            "描述一下这个人是怎么说话的。",
            "你会如何形容说话人的表达方式？",
            "这段语音是平稳、快速、缓慢还是耳语？",
            "说话人的声音传达了怎样的情绪或风格？",
            "请识别这段录音中的说话风格。",
            "说话人是以什么方式在讲话？",
            "请对这段语音的风格进行分类。",
            "说话人的语气或情绪是什么？",
            "说话人听起来怎么样：平静、急促、缓慢还是低声细语？",
            "用一个词描述说话人的发声风格。",
            "你听到的是哪种说话风格？",
            "说说这个人的讲话方式。",
            "识别这个声音的情绪或风格。",
            "哪种说话风格最符合这段音频？",
            "说话人是在耳语、正常说话，还是语速有变化？",
            "请标注这段语音的表达风格。",
            "说话人的讲话方式有什么特点？",
            "这段声音是用什么风格说出来的？",
            "这段音频中的人是怎样说话的？",
            "请给出这个声音的说话风格或情绪。",
            "这是哪种风格的语音？",
        ),
    },
    "sound": {
        "en": (
            "What sound is heard in this audio?",
            "Classify the sound event in this clip.",
            "Identify the type of sound you hear.",
            "What kind of audio event is this?",
            "Name the sound in this recording.",
            "What sort of sound is this: a tone, a chirp, a siren, noise, or something else?",
            "Which category does this sound belong to?",
            "Listen and label the sound event.",
            "What type of signal or sound is present?",
            "Recognize the sound in this clip.",
            "Tell me what kind of sound this is.",
            "Is this a tone, a chirp, a siren, noise, beeps, or a chord?",
            "Detect and name the main sound event.",
            "What vocal or acoustic event occurs in this audio?",
            "Give a label for the sound you hear.",
            "Which sound class best describes this audio?",
            "What do you hear in this recording? Answer with the sound type.",
            "Categorize the audio event.",
            "Determine what sound is being played.",
            "What is the dominant sound in this clip?",
            "Name the kind of sound event in one or two words.",
            "Classify this audio: what sound is it?",
        ),
        "zh": (
            "这段音频里听到的是什么声音？",
            "请对这段音频中的声音事件进行分类。",
            "识别你听到的声音类型。",
            "这是哪一类音频事件？",
            "说出这段录音中的声音名称。",
            "这是什么样的声音：纯音、啁啾、警笛、噪声，还是别的？",
            "这个声音属于哪个类别？",
            "听一听，给这个声音事件打个标签。",
            "音频中出现的是哪种信号或声音？",
            "识别这段音频中的声音。",
            "告诉我这是什么类型的声音。",
            "这是纯音、啁啾、警笛、噪声、哔哔声还是和弦？",
            "检测并说出主要的声音事件。",
            "这段音频中发生了什么人声或声学事件？",
            "为你听到的声音给出一个标签。",
            "哪个声音类别最能描述这段音频？",
            "你在这段录音里听到了什么？请回答声音类型。",
            "请给这个音频事件归类。",
            "判断正在播放的是什么声音。",
            "这段音频中最主要的声音是什么？",
            "用一两个词说出声音事件的类型。",
            "给这段音频分类：这是什么声音？",
        ),
    },
    "caption": {
        "en": (
            "Describe the audio in one sentence.",
            "Write a short caption for this audio clip.",
            "What is happening in this recording? Answer in one sentence.",
            "Give a one-sentence description of what you hear.",
            "Caption this audio.",
            "Summarize the content of this clip in a single sentence.",
            "Provide a brief description of the sounds in this audio.",
            "Generate a caption describing this recording.",
            "In one sentence, describe the audio.",
            "What can be heard in this clip? Describe it briefly.",
            "Write one sentence that captures what this audio contains.",
            "Briefly describe this sound recording.",
            "Describe the acoustic scene in a sentence.",
            "Give this audio a descriptive caption.",
            "Tell me in one sentence what this audio sounds like.",
            "Produce a concise caption for the audio.",
            "How would you describe this clip to someone who cannot hear it?",
            "Write a single-sentence audio caption.",
            "Describe what you hear, using one sentence.",
            "Summarize this recording in one line.",
            "Give a short natural-language description of the audio.",
            "What does this audio contain? Reply with a one-sentence caption.",
        ),
        "zh": (
            "用一句话描述这段音频。",
            "为这段音频写一个简短的描述。",
            "这段录音里发生了什么？请用一句话回答。",
            "用一句话描述你听到的内容。",
            "给这段音频配一句说明。",
            "用一句话概括这段音频的内容。",
            "简要描述这段音频中的声音。",
            "生成一句描述这段录音的文字。",
            "请用一句话说明这段音频里有什么。",
            "这段音频里能听到什么？请简单描述。",
            "写一句话，概括这段音频包含的内容。",
            "简单描述一下这段录音。",
            "用一句话描述其中的声学场景。",
            "为这段音频写一个描述性的标题。",
            "用一句话告诉我这段音频听起来是什么样的。",
            "为这段音频生成一句简洁的描述。",
            "如果要向听不到的人介绍这段音频，你会怎么描述？",
            "写一句话作为这段音频的字幕说明。",
            "用一句话描述你所听到的。",
            "用一行字总结这段录音。",
            "用简短的自然语言描述这段音频。",
            "这段音频包含什么？请用一句话回答。",
        ),
    },
    "count": {
        "en": (
            "How many beeps are there?",
            "How many times does the tone repeat?",
            "Is the person speaking fast or slowly?",
            "Count the number of beeps in this clip.",
            "How many separate sounds can you hear?",
            "How many times is the sound repeated?",
            "What is the speaking rate: fast, normal, or slow?",
            "How many pulses occur in this audio?",
            "Count how many times the signal repeats and answer with a number.",
            "How many distinct beeps do you hear?",
            "Is the speech rate fast or slow?",
            "How many events occur in this recording?",
            "Give the number of repetitions of the tone.",
            "How quickly is the speaker talking: fast, normal, or slow?",
            "How many times do you hear the sound?",
            "Answer with a number: how many beeps are in the audio?",
            "How many sound events are there in total?",
            "Is the tempo of the speech fast or slow?",
            "Count the repetitions in this clip.",
            "How many tones are played?",
            "How often does the sound occur in this clip? Give a number.",
            "Does the speaker talk quickly or slowly?",
        ),
        "zh": (
            "一共有几声哔哔声？",
            "这个音调重复了几次？",
            "这个人说话快还是慢？",
            "数一数这段音频中有多少声哔哔声。",
            "你能听到几个独立的声音？",
            "这个声音重复了多少次？",
            "语速是快、正常还是慢？",
            "这段音频中有多少个脉冲？",
            "数一数信号重复了几次，用数字回答。",
            "你听到了几声不同的哔哔声？",
            "说话的语速是快还是慢？",
            "这段录音中发生了多少个事件？",
            "请给出这个音调重复的次数。",
            "说话人讲得多快：快、正常还是慢？",
            "这个声音你听到了几次？",
            "请用数字回答：音频里有几声哔哔声？",
            "总共有多少个声音事件？",
            "这段语音的节奏是快还是慢？",
            "数一数这段音频里的重复次数。",
            "一共播放了几个音？",
            "这个声音在音频里出现了几次？请给出数字。",
            "说话人讲话快还是慢？",
        ),
    },
}


def placeholders(template: str) -> frozenset[str]:
    """Return the names of the ``{...}`` fields used in ``template``."""
    return frozenset(name for _, name, _, _ in Formatter().parse(template) if name is not None)


def language_name(code: str, prompt_language: str = "en") -> str:
    """Name of language ``code`` written in ``prompt_language`` (e.g. ``("fr", "zh") -> "法语"``)."""
    if code not in LANGUAGE_NAMES:
        raise ValueError(f"unknown language code {code!r}; expected one of {', '.join(LANGUAGE_CODES)}")
    _check_prompt_language(prompt_language)
    return LANGUAGE_NAMES[code][prompt_language]


def _check_prompt_language(prompt_language: str) -> None:
    if prompt_language not in PROMPT_LANGUAGES:
        raise ValueError(
            f"unknown prompt language {prompt_language!r}; expected one of {', '.join(PROMPT_LANGUAGES)}"
        )


def _digest(task: str, seed: int, key: str) -> bytes:
    return hashlib.sha256(f"{seed}:{task}:{key}".encode()).digest()


def _pick(digest: bytes, offset: int, n: int) -> int:
    """Index in ``range(n)`` taken from 8 bytes of ``digest`` starting at ``offset``."""
    return int.from_bytes(digest[offset : offset + 8], "big") % n


def _usable(templates: tuple[str, ...], available: frozenset[str], task: str) -> tuple[str, ...]:
    """Templates whose placeholders can all be filled; ValueError when none can."""
    usable = tuple(t for t in templates if placeholders(t) <= available)
    if not usable:
        needed = sorted(set().union(*(placeholders(t) for t in templates)) - available)
        raise ValueError(f"task {task!r} needs {' and '.join(needed)} but it was not given")
    return usable


def select_prompt(
    task: str,
    *,
    seed: int,
    key: str,
    language: str | None = None,
    target_language: str | None = None,
    prompt_language: str | None = None,
) -> str:
    """Pick an instruction for ``task`` deterministically from ``(seed, task, key)``.

    ``prompt_language`` is drawn from the same SHA-256 digest when None.  ``{language}`` and
    ``{target_language}`` are filled with :func:`language_name` in the prompt language.  Templates whose
    placeholder has no value are skipped (an ASR example without ``language`` gets a language-free
    prompt); ValueError is raised only when no template of the task can be filled (s2tt without
    ``target_language``).  Given language codes are always validated, so an unknown code fails for
    every key, not only for keys that land on a template using it.
    """
    if task not in PROMPTS:
        raise UnknownTaskError(task)
    digest = _digest(task, seed, key)
    if prompt_language is None:
        prompt_language = PROMPT_LANGUAGES[_pick(digest, 0, len(PROMPT_LANGUAGES))]
    _check_prompt_language(prompt_language)
    values = {
        name: language_name(code, prompt_language)
        for name, code in (("language", language), ("target_language", target_language))
        if code is not None
    }
    candidates = _usable(PROMPTS[task][prompt_language], frozenset(values), task)
    template = candidates[_pick(digest, 8, len(candidates))]
    return template.format(**values)
