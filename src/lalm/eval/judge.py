"""Optional AIR-Bench-style judge of chat responses through an OpenAI-compatible endpoint.

AIR-Bench scores chat answers with a strong LLM judge (GPT-4 in the report); no such model is
reachable here, so the judge runs only when `judge.endpoint` is configured and is skipped with a
clear message otherwise. Written with urllib so that no client library is needed for one POST.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from typing import Any

from lalm.config.eval import JudgeConfig

PROMPT = (
    "You are grading an assistant's answer to a question about audio. Reference answer: {reference}\n"
    "Assistant's answer: {prediction}\nScore the assistant's answer from 1 (wrong or unhelpful) to 10 "
    "(correct and helpful). Reply with the number only."
)


def _ask(cfg: JudgeConfig, content: str) -> str:
    request = urllib.request.Request(
        f"{cfg.endpoint.rstrip('/')}/chat/completions",  # type: ignore[union-attr]
        data=json.dumps(
            {"model": cfg.model, "messages": [{"role": "user", "content": content}], "temperature": 0}
        ).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {os.environ.get(cfg.api_key_env, '')}",
        },
    )
    with urllib.request.urlopen(request, timeout=cfg.timeout_s) as response:
        return json.loads(response.read())["choices"][0]["message"]["content"]


def judge_chat(items: list[dict[str, Any]], cfg: JudgeConfig) -> dict[str, float]:
    """Mean judge score (1-10) over chat items; {} with a printed notice when no endpoint is set."""
    if not cfg.endpoint:
        print(
            "chat judge skipped: set judge.endpoint=<OpenAI-compatible URL> (and judge.model) to score chat"
        )
        return {}
    scores = []
    for item in items:
        reply = _ask(cfg, PROMPT.format(reference=item["reference"], prediction=item["prediction"]))
        match = re.search(r"\d+(\.\d+)?", reply)
        if match is None:
            raise ValueError(f"judge reply for {item['id']} holds no score: {reply!r}")
        item["judge_score"] = min(10.0, max(1.0, float(match.group())))
        scores.append(item["judge_score"])
    return {"chat/judge_score": sum(scores) / len(scores), "chat/judged": len(scores)}
