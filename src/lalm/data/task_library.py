"""Tasks the public corpora bring beyond the synthetic corpus's eight, each registered in one place
with its prompts and scoring (see lalm.data.tasks). Prompts are lalm's own wording.

emotion       speech emotion recognition (MELD; IEMOCAP-style label sets)
vocal_sound   vocal sound classification (VocalSound: laughter, sigh, cough, throat clearing, sneeze, sniff)
music_genre   music genre classification (GTZAN-style label sets)
choice        a single-choice question with lettered options (AIR-Bench Foundation)

The answer of the first three is the corpus's label word (lower case, as the recipe writes it); scoring
maps a free-text answer onto the labels seen in the evaluation set (lalm.eval.metrics.map_to_label).
A `choice` record brings its own prompt (the instruction, the question and the options A-D) and its
answer is the letter, scored by exact match after normalisation ("B." and "b" match "B"). It is its
own task rather than `chat` so that its accuracy is not pooled with open chat answers; a benchmark
written one manifest per subset (data_recipes/airbench.py) is also scored per manifest
(lalm.eval.scoring).
"""

from __future__ import annotations

from lalm.data.tasks import Task, register_task

EMOTION_PROMPTS = {
    "en": (
        "What emotion does the speaker express?",
        "Identify the emotion in this speech.",
        "How does the speaker feel? Answer with one emotion.",
        "Classify the emotion of the voice in this clip.",
        "Which emotion is conveyed by this utterance?",
        "Listen to the speaker and name their emotion.",
        "What is the emotional state of the person speaking?",
        "Recognize the speaker's emotion.",
        "Tell me the emotion you hear in this recording.",
        "Describe the speaker's emotion in one word.",
        "Is the speaker happy, sad, angry or something else? Name the emotion.",
        "Detect the emotion expressed in the audio.",
        "What feeling comes through in this person's voice?",
        "Label this utterance with the speaker's emotion.",
        "From the tone of voice, what emotion is this?",
        "Give the emotion category of this speech.",
        "Which emotion best describes how this is said?",
        "What mood is the speaker in?",
        "Determine the emotion of the speaker in this clip.",
        "Name the emotion carried by this voice.",
    ),
    "zh": (
        "说话人表达了什么情绪？",
        "请识别这段语音中的情绪。",
        "说话人的感受如何？请用一个情绪词回答。",
        "请判断这段音频中声音的情绪类别。",
        "这句话传达了哪种情绪？",
        "听一听说话人，说出他的情绪。",
        "说话的人处于什么情绪状态？",
        "请识别说话人的情绪。",
        "告诉我你在这段录音中听到的情绪。",
        "用一个词描述说话人的情绪。",
        "说话人是高兴、悲伤、生气还是别的情绪？请说出来。",
        "检测音频中表达的情绪。",
        "从这个人的声音里能听出什么感受？",
        "给这句话标注说话人的情绪。",
        "根据语气判断，这是什么情绪？",
        "请给出这段语音的情绪类别。",
        "哪种情绪最能描述这句话的说法？",
        "说话人现在是什么心情？",
        "请确定这段音频中说话人的情绪。",
        "说出这个声音所带的情绪。",
    ),
}

VOCAL_SOUND_PROMPTS = {
    "en": (
        "What vocal sound does the person make?",
        "Classify the non-speech vocal sound in this clip.",
        "Is this a laugh, a sigh, a cough, throat clearing, a sneeze or a sniff?",
        "Identify the sound the person produces.",
        "Which vocal sound is this?",
        "Name the kind of vocal sound you hear.",
        "What sound comes from the person in this recording?",
        "Recognize the vocalization in the audio.",
        "Label this human vocal sound.",
        "What is the person doing: laughing, sighing, coughing, clearing the throat, sneezing or sniffing?",
        "Tell me which vocal sound is in this clip.",
        "Classify this human non-verbal sound.",
        "What type of vocalization is this?",
        "Listen and name the vocal sound.",
        "Which non-speech sound does the speaker make?",
        "Give the category of this vocal sound.",
        "What do you hear the person do in this audio?",
        "Identify the vocal event in the recording.",
        "Determine the kind of sound this person makes.",
        "Answer with the vocal sound heard in the clip.",
    ),
    "zh": (
        "这个人发出了什么声音？",
        "请对这段音频中的非语言人声进行分类。",
        "这是笑声、叹气、咳嗽、清嗓子、打喷嚏还是吸鼻子？",
        "请识别这个人发出的声音。",
        "这是哪种人声？",
        "说出你听到的人声类型。",
        "这段录音里的人发出了什么声音？",
        "请识别音频中的发声类型。",
        "给这段人声标注类别。",
        "这个人在做什么：笑、叹气、咳嗽、清嗓子、打喷嚏还是吸鼻子？",
        "告诉我这段音频中是哪种人声。",
        "请对这个非语言的人声分类。",
        "这是哪一类发声？",
        "听一听，说出这个人声的名称。",
        "说话人发出了哪种非语言声音？",
        "请给出这段人声的类别。",
        "你听到音频里的人在做什么？",
        "请识别录音中的人声事件。",
        "判断这个人发出的是哪种声音。",
        "请回答音频中听到的人声。",
    ),
}

MUSIC_GENRE_PROMPTS = {
    "en": (
        "What genre is this music?",
        "Classify the genre of this piece.",
        "Which musical genre does this clip belong to?",
        "Name the genre of the music you hear.",
        "Identify the style of this music.",
        "What kind of music is this?",
        "Tell me the genre of this song.",
        "Listen and give the music genre.",
        "Which genre best describes this recording?",
        "Label this music with its genre.",
        "What genre would you file this track under?",
        "Recognize the genre of the music in the audio.",
        "Determine the musical genre of this excerpt.",
        "Is this rock, jazz, classical or something else? Name the genre.",
        "Give the genre category of this audio.",
        "What style of music is playing?",
        "Answer with the genre of this music clip.",
        "Which genre does this song fit?",
        "Classify this track by genre.",
        "What musical genre is this excerpt from?",
    ),
    "zh": (
        "这段音乐是什么流派？",
        "请判断这首曲子的流派。",
        "这段音频属于哪种音乐流派？",
        "说出你听到的音乐的流派。",
        "请识别这段音乐的风格。",
        "这是什么类型的音乐？",
        "告诉我这首歌的流派。",
        "听一听，给出音乐流派。",
        "哪个流派最能描述这段录音？",
        "给这段音乐标注流派。",
        "你会把这首曲子归入哪个流派？",
        "请识别音频中音乐的流派。",
        "判断这段音乐片段的流派。",
        "这是摇滚、爵士、古典还是别的？请说出流派。",
        "请给出这段音频的流派类别。",
        "正在播放的是什么风格的音乐？",
        "请回答这段音乐的流派。",
        "这首歌属于哪个流派？",
        "按流派给这首曲子分类。",
        "这段音乐片段出自哪种流派？",
    ),
}

register_task(Task("emotion", "accuracy", "speech emotion recognition", EMOTION_PROMPTS))
register_task(Task("vocal_sound", "accuracy", "vocal sound classification", VOCAL_SOUND_PROMPTS))
register_task(Task("music_genre", "accuracy", "music genre classification", MUSIC_GENRE_PROMPTS))
register_task(
    Task("choice", "exact", "a single-choice question: the answer is the letter of one listed option")
)
