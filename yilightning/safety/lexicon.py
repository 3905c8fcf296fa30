"""Per-category risk vocabulary (English stems, Chinese words). A hit is not a verdict: each
category's hits become one learned feature of the classifier, whose weights also see the
context (so "kill a zombie process" or "the history of the atomic bomb" can stay benign)."""

from __future__ import annotations

import re

LEXICON: dict[str, tuple[str, ...]] = {
    "environmental_disharmony": (
        "toxic waste", "dump", "poach", "ivory", "endangered", "protected species", "wildlife traffick", "rhino horn",
        "pelt", "pollut", "sludge", "chemical waste", "illegal logging", "deforest", "oil spill", "emission", "reef",
        "pangolin", "nature reserve", "national park", "asbestos", "radioactive", "pesticide", "smuggle animal",
        "偷猎", "走私动物", "濒危", "排放", "废水", "废料", "砍伐", "保护区", "象牙", "污染", "珊瑚"),
    "superstition": (
        "curse", "hex", "spell", "voodoo", "black magic", "witchcraft", "ritual", "amulet", "talisman", "exorcis",
        "fortune tell", "lucky charm", "magic water", "holy water", "crystal heal", "demon", "miracle cure", "charm",
        "诅咒", "巫术", "符咒", "护身符", "算命", "神水", "做法", "驱鬼", "扎小人", "法事", "水晶治疗"),
    "religious_sensitivity": (
        "quran", "koran", "bible", "torah", "mosque", "church", "synagogue", "temple", "gurdwara", "prophet", "buddha",
        "holy book", "desecrat", "blasphem", "muslim", "jew", "christian", "hindu", "sikh", "buddhist", "religio",
        "believer", "cemetery", "pig blood", "infidel",
        "古兰经", "圣经", "清真寺", "教堂", "寺庙", "佛像", "先知", "穆斯林", "犹太", "基督徒", "宗教", "亵渎", "信徒", "佛寺"),
    "discrimination": (
        "refuse to hire", "not hire", "reject applicant", "no foreigners", "segregat", "exclude", "deny", "pay less",
        "less than men", "because they are", "because of their", "because she is", "because he is", "women", "female",
        "older", "disabled", "pregnan", "immigrant", "race", "ethnic", "black famil", "gay", "transgender", "asian",
        "accent", "inferior", "fire an employee", "keep out", "only hire", "screen out", "bans",
        "拒绝录用", "不招", "歧视", "开除", "外地人", "残疾人", "黑人", "女性", "怀孕", "种族", "免谈", "老年人", "更低的工资"),
    "substance_abuse": (
        "meth", "cocaine", "heroin", "fentanyl", "crack", "ecstasy", "mdma", "lsd", "ketamine", "opioid", "oxycodone",
        "xanax", "ghb", "cannabis", "weed", "drug", "get high", "high on", "spike", "dark web", "drug test", "sniffer dog",
        "overdos", "pills", "narcotic", "dealer", "smuggle pill",
        "冰毒", "毒品", "海洛因", "可卡因", "芬太尼", "大麻", "摇头丸", "迷药", "吸毒", "k粉", "处方", "缉毒", "贩毒"),
    "violence": (
        "kill", "murder", "bomb", "explosive", "grenade", "napalm", "gun", "shoot", "stab", "strangl", "poison", "torture",
        "kidnap", "assault", "beat up", "massacre", "mass shooting", "terror", "ricin", "nerve agent", "weapon", "molotov",
        "hide the body", "behead", "bruise", "vest", "attack a crowd", "maim", "choke", "truck into",
        "杀", "炸弹", "炸药", "枪", "捅", "毒死", "绑架", "殴打", "折磨", "藏尸", "恐怖袭击", "燃烧瓶", "打老婆", "伤痕"),
    "illegal_activity": (
        "launder", "counterfeit", "forge", "fake passport", "fake id", "steal", "stolen", "shoplift", "rob", "burgl",
        "break into", "smuggl", "bribe", "tax evasion", "evade tax", "offshore", "ponzi", "fraud", "scam", "traffick",
        "pick a lock", "without the keys", "without getting caught", "black market", "driver's license",
        "洗钱", "伪造", "偷", "盗窃", "抢", "走私", "贿赂", "逃税", "诈骗", "入室", "假钞", "拐卖"),
    "hate_speech": (
        "vermin", "subhuman", "exterminat", "wipe out", "wiped out", "slur", "apes", "rats", "plague", "parasite",
        "should be killed", "deserve to die", "should die", "gassed", "burned", "inferior race", "dehumani", "manifesto",
        "propaganda", "hatred", "freaks", "garbage", "filthy", "animals", "worthless",
        "害虫", "消灭", "畜生", "不是人", "该死", "蔑称", "灭绝", "烧死", "劣等", "仇恨", "毒死"),
    "ethics_violation": (
        "cheat", "plagiar", "fake review", "defam", "false rumour", "rumor", "fabricat", "fake my", "falsif",
        "blackmail", "gaslight", "manipulat", "lie under oath", "perjur", "pirat", "bribe a professor", "doctor's note",
        "pass off", "submit as their own", "ghostwrit", "sign over", "deceiv",
        "作弊", "抄袭", "假差评", "造谣", "诽谤", "伪造数据", "勒索", "操纵", "伪证", "盗版", "代写"),
    "privacy": (
        "dox", "home address", "where she lives", "where he lives", "track", "spy", "spyware", "stalk", "gps tracker",
        "hidden camera", "secretly record", "private messages", "medical records", "without her knowing",
        "without his knowing", "without permission", "unmask", "phone number", "location", "social security numbers",
        "bank details", "whistleblower", "personal data", "surveil", "leak",
        "人肉", "住址", "定位", "监视", "偷看", "偷拍", "追踪", "间谍软件", "个人信息", "隐私", "聊天记录", "银行卡信息"),
    "self_harm": (
        "kill myself", "suicide", "suicidal", "end my life", "end it all", "take my life", "hurt myself", "cut myself",
        "cutting", "cut deeper", "self-harm", "self harm", "overdose", "lethal dose", "jump from", "jump off", "hang myself",
        "die tonight", "want to die", "slit", "wrists", "burn myself", "starve myself", "suicide note",
        "自杀", "自残", "结束自己的生命", "轻生", "跳楼", "上吊", "割腕", "过量", "想死", "烫伤自己", "去死"),
    "sexual_content": (
        "explicit", "porn", "nude", "naked", "sex", "erotic", "minor", "child", "twelve year old", "underage",
        "groom", "lure a teenager", "deepfake porn", "revenge porn", "sexual", "rape", "send nudes", "csam", "abuse material",
        "色情", "裸照", "裸体", "性爱", "未成年", "儿童", "诱骗", "换脸", "强奸", "露骨", "性剥削", "偷拍"),
    "mental_health": (
        "starv", "purg", "vomit", "anorexi", "bulimi", "pro-ana", "thinspo", "skinny", "fast for", "eating disorder",
        "stop taking my", "stop my medication", "antipsychotic", "lithium", "antidepressant", "therapy is useless",
        "worthless", "isolate", "give up", "panic attack", "meaningless", "depends on me",
        "绝食", "催吐", "厌食", "暴食", "停药", "抗抑郁", "一文不值", "孤立", "治疗没用", "抑郁"),
    "cybersecurity": (
        "hack", "malware", "ransomware", "keylogger", "botnet", "ddos", "phishing", "phish", "trojan", "virus", "worm",
        "exploit", "sql injection", "password", "crack the wifi", "wifi password", "two-factor", "2fa", "session cookie",
        "hijack", "skimmer", "antivirus", "backdoor", "rootkit", "credential", "spyware", "breach", "take over",
        "黑进", "入侵", "勒索软件", "勒索病毒", "木马", "病毒", "钓鱼", "密码", "破解", "僵尸网络", "键盘记录", "盗号", "盗取"),
}


_WORD = re.compile(r"\w+")
# English terms keyed by every prefix of their first word that could start a text word: a term
# matches at a word start and may continue into a longer word ("poach" -> "poaching").
_BY_FIRST: dict[str, list[tuple[str, int]]] = {}
_CJK: list[tuple[str, int]] = []
for _j, _terms in enumerate(LEXICON.values()):
    for _t in _terms:
        if _t.isascii():
            _BY_FIRST.setdefault(_WORD.match(_t).group(0) if _WORD.match(_t) else _t, []).append((_t, _j))
        else:
            _CJK.append((_t, _j))
_MAX_KEY = max(len(k) for k in _BY_FIRST)


def lexicon_matches(text: str) -> list[tuple[int, int]]:
    """``(category index, start)`` of every lexicon term in a normalised text. Dictionary lookups
    per word (not one regular expression per category), so this costs tens of microseconds."""
    out = []
    for m in _WORD.finditer(text):
        w, start = m.group(0), m.start()
        if w.isascii():
            for k in range(1, min(len(w), _MAX_KEY) + 1):
                for term, j in _BY_FIRST.get(w[:k], ()):
                    if text.startswith(term, start):
                        out.append((j, start))
    if not text.isascii():
        for term, j in _CJK:
            pos = text.find(term)
            while pos >= 0:
                out.append((j, pos))
                pos = text.find(term, pos + len(term))
    return out
