"""Deterministic PII detection: e-mail addresses, phone numbers (international, North American,
Chinese mobile), payment-card numbers (Luhn checksum), Chinese resident ID numbers (ISO 7064
MOD 11-2 checksum and a valid birth date), US social security numbers (valid area/group/serial),
IBANs (MOD 97) and IPv4/IPv6 addresses. Each match is a :class:`PIISpan`; :func:`mask_pii`
replaces them with ``[EMAIL]``, ``[PHONE]`` ..."""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class PIISpan:
    kind: str  # email, phone, card, cn_id, ssn, iban, ip
    start: int
    end: int
    text: str


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a digit string (payment cards)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_CN_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def cn_id_valid(number: str) -> bool:
    """An 18-character Chinese resident identity number: a real birth date and the ISO 7064
    MOD 11-2 check character."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    try:
        born = datetime.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    if not 1900 <= born.year <= datetime.date.today().year:
        return False
    check = "10X98765432"[sum(int(d) * w for d, w in zip(number[:17], _CN_WEIGHTS)) % 11]
    return number[17].upper() == check


def ssn_valid(number: str) -> bool:
    """A US social security number ``AAA-GG-SSSS`` that the SSA could have issued."""
    area, group, serial = number.split("-")
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def iban_valid(iban: str) -> bool:
    """The ISO 13616 MOD 97 check of an IBAN (spaces allowed)."""
    s = iban.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    digits = "".join(str(int(c, 36)) for c in s[4:] + s[:4])
    return int(digits) % 97 == 1


_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_CN_ID = re.compile(r"(?<![\dA-Za-z])\d{17}[\dXx](?![\dA-Za-z])")
_SSN = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")
_IBAN = re.compile(r"(?<![A-Z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Z0-9])")
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"  # +44 20 7946 0958
    r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}|\d{3}[.-]\d{3}[.-]\d{4}"  # (212) 555-0147, 212-555-0147
    r"|1[3-9]\d{9}"  # Chinese mobile 13800138000
    r")(?![\w])")
_DIGITS = re.compile(r"\d\d")
_IPV4 = re.compile(r"(?<!\d\.)(?<!\d)(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)")  # a sentence's full stop may follow
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])")


def find_pii(text: str) -> list[PIISpan]:
    """All PII spans in ``text``, sorted by position, without overlaps (the first, longest match
    wins). Checksummed kinds are reported only when the checksum holds."""
    spans: list[PIISpan] = []

    def add(kind: str, m: re.Match) -> None:
        spans.append(PIISpan(kind, m.start(), m.end(), m.group(0)))

    if "@" in text:
        for m in _EMAIL.finditer(text):
            add("email", m)
    if not _DIGITS.search(text):  # every other kind has at least two digits in a row
        return _resolve(spans)
    for m in _CN_ID.finditer(text):
        if cn_id_valid(m.group(0)):
            add("cn_id", m)
    for m in _SSN.finditer(text):
        if ssn_valid(m.group(0)):
            add("ssn", m)
    for m in _IBAN.finditer(text):  # the match may have taken a trailing word ("... 7034 EUR")
        span = _valid_part(m, iban_valid, keep_first=True, min_chars=15)
        if span:
            spans.append(PIISpan("iban", *span, text[span[0]:span[1]]))
    for m in _CARD.finditer(text):  # ... or a neighbouring number ("card 4111 ... 1111 123")
        span = _valid_part(m, _card_valid, keep_first=False, min_chars=13)
        if span:
            spans.append(PIISpan("card", *span, text[span[0]:span[1]]))
    for m in _PHONE.finditer(text):
        if sum(c.isdigit() for c in m.group(0)) >= 7:
            add("phone", m)
    for m in _IPV4.finditer(text):
        if all(int(p) <= 255 for p in m.group(0).split(".")):
            add("ip", m)
    for m in _IPV6.finditer(text):
        groups = [g for g in m.group(0).split(":") if g]
        if len(groups) < 3 or not any(c.isdigit() for c in m.group(0)):
            continue  # "Example::" in reST or "a::b" in code is not an address
        try:
            ipaddress.IPv6Address(m.group(0))
        except ValueError:
            continue
        add("ip", m)
    return _resolve(spans)


def _card_valid(candidate: str) -> bool:
    digits = re.sub(r"[ -]", "", candidate)
    return 13 <= len(digits) <= 19 and digits.strip("0") != "" and luhn_valid(digits)


_GROUP = re.compile(r"[A-Za-z0-9]+")


def _valid_part(m: re.Match, valid: Callable[[str], bool], keep_first: bool, min_chars: int
                ) -> tuple[int, int] | None:
    """(start, end) of the longest run of the match's separator-delimited groups that passes
    ``valid``: the regex may have swallowed a neighbouring group, and ``finditer`` does not retry
    shorter matches. ``keep_first``: the run must start with the first group (an IBAN's country
    code); runs of fewer than ``min_chars`` characters are not tried."""
    groups = [(g.start(), g.end()) for g in _GROUP.finditer(m.group(0))]
    size = [0]
    for g0, g1 in groups:
        size.append(size[-1] + g1 - g0)
    runs = [(i, j) for i in range(1 if keep_first else len(groups)) for j in range(len(groups), i, -1)
            if size[j] - size[i] >= min_chars]
    for i, j in sorted(runs, key=lambda r: r[0] - r[1]):  # longest first, then leftmost
        start, end = m.start() + groups[i][0], m.start() + groups[j - 1][1]
        if valid(m.string[start:end]):
            return start, end
    return None


def _resolve(spans: list[PIISpan]) -> list[PIISpan]:
    spans.sort(key=lambda s: (s.start, -(s.end - s.start)))
    kept: list[PIISpan] = []
    for s in spans:
        if not kept or s.start >= kept[-1].end:
            kept.append(s)
    return kept


def mask_pii(text: str, spans: list[PIISpan] | None = None) -> str:
    """``text`` with every PII span replaced by its kind in brackets, e.g. ``[EMAIL]``."""
    spans = find_pii(text) if spans is None else spans
    out, pos = [], 0
    for s in spans:
        out.append(text[pos:s.start])
        out.append(f"[{s.kind.upper()}]")
        pos = s.end
    out.append(text[pos:])
    return "".join(out)
