"""RAISE component 2, post-training optimisation: safety SFT data (harmful prompt -> refusal
with a safe redirection; borderline prompt -> a helpful answer, against over-refusal), safety
preference pairs for DPO, and a safety reward to combine with a reward model's score."""

from __future__ import annotations

import random
import re

from yilightning.safety.corpus import (ACTS_EN, ACTS_ZH, BENIGN_QA_EN, BENIGN_QA_ZH, COMPLIANCE_EN, COMPLIANCE_ZH,
                                       REFUSALS_EN, REFUSALS_ZH, REQUEST_TEMPLATES_EN, REQUEST_TEMPLATES_ZH, TOPICS_EN,
                                       TOPICS_ZH, _split)
from yilightning.safety.taxonomy import CATEGORY_NAMES

_REFUSAL = re.compile(
    r"\b(?:i can(?:no|')t|i cannot|i won't|i will not|i'm not able to|i am not able to|i'm unable to|i am unable to|"
    r"sorry, (?:but )?i|i must decline|i do not feel comfortable|i don't feel comfortable|as an ai)\b"
    r"|抱歉|对不起|我不能|我无法|无法提供|不能帮助",
    re.IGNORECASE)


def is_refusal(response: str) -> bool:
    """Whether a response declines (English or Chinese refusal phrases in its first 200 characters)."""
    return bool(_REFUSAL.search(response[:200]))


def _harmful_prompts(rng: random.Random, split: str) -> list[tuple[str, str, str]]:
    out = []
    for lang, acts, templates in (("en", ACTS_EN, REQUEST_TEMPLATES_EN), ("zh", ACTS_ZH, REQUEST_TEMPLATES_ZH)):
        for cat in CATEGORY_NAMES:
            for act in _split(acts[cat], split):
                out.append((cat, lang, rng.choice(templates).format(act=act)))
    return out


def _refusal(cat: str, lang: str, rng: random.Random) -> str:
    return rng.choice(REFUSALS_EN if lang == "en" else REFUSALS_ZH).format(topic=(TOPICS_EN if lang == "en" else TOPICS_ZH)[cat])


def safety_sft_examples(seed: int = 0, split: str = "train") -> list[dict]:
    """Chat examples ``{"messages": [...], "category": str | None}``: every harmful prompt gets a
    refusal that redirects to something safe and helpful (crisis lines for self-harm); every
    borderline look-alike prompt gets a helpful answer, so the model does not learn to
    over-refuse. Feed them to SFT beside the general data."""
    rng = random.Random(seed)
    out = [{"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": _refusal(c, lang, rng)}],
            "category": c} for c, lang, p in _harmful_prompts(rng, split)]
    for q, a in _split(BENIGN_QA_EN, split) + _split(BENIGN_QA_ZH, split):
        out.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}], "category": None})
    return out


def safety_preference_pairs(seed: int = 0, split: str = "train") -> list[dict]:
    """DPO pairs ``{"prompt", "chosen", "rejected", "category"}``: for harmful prompts the
    refusal is chosen over a compliant reply; for borderline prompts the helpful answer is chosen
    over a refusal (over-refusal is a failure too)."""
    rng = random.Random(seed)
    out = []
    for cat, lang, prompt in _harmful_prompts(rng, split):
        act = prompt  # the compliant stand-in repeats the request; it contains no instructions
        comply = rng.choice(COMPLIANCE_EN if lang == "en" else COMPLIANCE_ZH).format(act=act.rstrip("?.？。"))
        out.append({"prompt": prompt, "chosen": _refusal(cat, lang, rng), "rejected": comply, "category": cat})
    for q, a in _split(BENIGN_QA_EN, split) + _split(BENIGN_QA_ZH, split):
        lang = "en" if q.isascii() else "zh"
        refusal = rng.choice(REFUSALS_EN if lang == "en" else REFUSALS_ZH).format(
            topic="this topic" if lang == "en" else "这个话题")
        out.append({"prompt": q, "chosen": a, "rejected": refusal, "category": None})
    return out


def safety_reward(prompt: str, response: str, engine=None) -> float:
    """A reward in [-1, 1] for RLHF / online DPO:

    - the response itself is flagged unsafe: -1;
    - the prompt is unsafe: +1 for a refusal, -0.5 for anything else;
    - the prompt is safe: -0.5 for a refusal (over-refusal), 0 otherwise (helpfulness is the
      reward model's job).

    Combine as ``rm_score + weight * safety_reward(...)``; a weight around the spread of the
    reward model's scores makes safety decisive only where it applies."""
    if engine is None:
        from yilightning.safety.engine import RAISE

        engine = RAISE()
    if engine.check_output(response).categories:
        return -1.0
    refused = is_refusal(response)
    if engine.check_input(prompt).categories:
        return 1.0 if refused else -0.5
    return -0.5 if refused else 0.0
