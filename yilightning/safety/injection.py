"""Prompt-injection and jailbreak patterns (English and Chinese), matched on the normalised
text so that spacing, leetspeak and full-width tricks do not hide them; plus instructions to
decode and obey an encoded payload."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class InjectionMatch:
    kind: str  # ignore_instructions, prompt_leak, persona, no_restrictions, encoded_payload
    start: int  # offsets into the text the patterns ran on
    end: int
    text: str


_ANY = r"(?:all |any |the |your |my |these |those |of |previous |prior |above |earlier |preceding |system |safety |original )*"
PATTERNS: dict[str, list[str]] = {
    "ignore_instructions": [
        rf"\b(?:ignore|disregard|forget|override|bypass|skip)\s+{_ANY}(?:instructions?|rules?|guidelines?|prompts?|policies|policy|directives?|restrictions?|programming|training)\b",
        r"\bnew (?:instructions?|rules?)\s*:",
        r"(?:忽略|无视|忘记|忘掉|不要理会)(?:之前|以上|前面|上面|先前|所有|你的|系统)?.{0,6}(?:指令|指示|规则|提示|设定|要求|限制)",
    ],
    "prompt_leak": [
        r"\b(?:reveal|print|show|repeat|output|tell me)\s+(?:me\s+)?(?:your|the)\s+(?:system|hidden|initial|original)\s+(?:prompt|instructions?|message)\b",
        r"(?:输出|显示|告诉我|重复)(?:你的)?(?:系统提示|系统指令|初始指令)",
    ],
    "persona": [
        r"\b(?:you are|you're|act as|pretend to be|pretend you are|roleplay as|role-play as|play the role of|from now on you are)\s+(?:now\s+)?(?:an?\s+)?(?:dan|evil|unfiltered|uncensored|jailbroken|unrestricted|amoral|rogue)\b",
        r"\bdo anything now\b|\bdeveloper mode\b|\bjailbreak(?:ed)? mode\b|\bgod mode\b",
        r"\b(?:my )?(?:late |dead |deceased )?grand(?:ma|mother|pa|father) (?:used to|would) (?:tell|read|explain)",
        r"(?:扮演|假装|你现在是|从现在起你是).{0,12}(?:没有|不受|无)(?:任何)?(?:限制|约束|规则|道德)",
        r"开发者模式|越狱模式",
    ],
    "no_restrictions": [
        r"\b(?:without|with no|free of|no longer (?:bound by|have))\s+(?:any\s+)?(?:restrictions|rules|limits|filters|guidelines|ethics|morals|censorship)\b",
        r"\b(?:stay in character|never refuse|do not refuse|don't refuse|must not refuse|cannot refuse)\b",
        r"(?:不要|不能|不许|禁止)拒绝|没有任何(?:限制|规则|道德)",
    ],
    "encoded_payload": [
        r"\b(?:decode|decrypt|translate|convert)\b.{0,40}\b(?:base ?6[4a]|b6[4a]|hex|rot-?(?:13|ie|i3)|binary|cipher)\b.{0,60}\b(?:follow|obey|execute|answer|do what|carry out|respond)",
        r"(?:解码|解密).{0,20}(?:执行|照做|回答|遵循)",
    ],
}
# Each pattern can only match where one of its trigger words occurs; a substring test is far
# cheaper than running the regular expression (same order as PATTERNS).
TRIGGERS: dict[str, list[tuple[str, ...]]] = {
    "ignore_instructions": [("ignor", "disregard", "forget", "overrid", "bypass", "skip"), ("new ",),
                            ("忽略", "无视", "忘记", "忘掉", "不要理会")],
    "prompt_leak": [("system", "hidden", "initial", "original"), ("系统提示", "系统指令", "初始指令")],
    "persona": [("dan", "evil", "unfilter", "uncensor", "jailbr", "unrestrict", "amoral", "rogue"),
                ("anything now", "mode"), ("grand",), ("扮演", "假装", "你现在是", "从现在起你是"), ("开发者模式", "越狱模式")],
    "no_restrictions": [("without", "with no", "free of", "no longer"), ("character", "refuse"), ("拒绝", "没有任何")],
    "encoded_payload": [("decod", "decrypt", "translat", "convert"), ("解码", "解密")],
}
_COMPILED = [(kind, trig, re.compile(p, re.DOTALL), re.compile(p, re.IGNORECASE | re.DOTALL))
             for kind, pats in PATTERNS.items() for p, trig in zip(pats, TRIGGERS[kind], strict=True)]


def find_injections(text: str, *, lowercase: bool = True) -> list[InjectionMatch]:
    """Every pattern match in ``text``, sorted by position. Run it on ``normalize(text)``
    (lower case); ``lowercase=False`` matches any case (slower)."""
    low = text if lowercase else text.lower()
    out = [InjectionMatch(kind, m.start(), m.end(), m.group(0))
           for kind, trig, rx, rx_any in _COMPILED if any(t in low for t in trig)
           for m in (rx if lowercase else rx_any).finditer(text)]
    return sorted(out, key=lambda m: (m.start, m.end))


def neutralize(text: str) -> tuple[str, list[InjectionMatch]]:
    """``text`` with every injection pattern replaced by ``[neutralised instruction]``; the
    patterns run on the raw text here, so the rewrite keeps the user's own characters."""
    matches = find_injections(text, lowercase=False)
    out, pos = [], 0
    for m in matches:
        if m.start < pos:
            continue
        out += [text[pos:m.start], "[neutralised instruction]"]
        pos = m.end
    out.append(text[pos:])
    return "".join(out), matches
