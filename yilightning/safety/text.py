"""Text preparation before any detector runs: sanitising (invalid UTF-8, control characters),
obfuscation normalisation (full-width forms, homoglyphs, leetspeak, spaced-out letters,
zero-width characters) and decoding of embedded payloads (base64, hex, URL escapes, ROT13)."""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from urllib.parse import unquote

# Control characters except tab/newline/carriage return; zero-width and bidi-override characters
# (used to split words invisibly or to reorder what a reader sees).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")

# Look-alike letters from Cyrillic and Greek mapped to the Latin letter they imitate.
_HOMOGLYPHS = str.maketrans({
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ɡ": "g",
    "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "ω": "w", "ո": "n", "ս": "u", "ı": "i", "ℓ": "l",
})
# Leetspeak, applied only inside words that also contain letters ("k1ll" -> "kill", "12" stays).
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
                       "@": "a", "$": "s", "|": "l", "€": "e"})
# A word mixing letters with digits/symbols; anchored at word starts so the scan stays linear.
_LEET_WORD = re.compile(r"(?<![\w@$|€])(?=[\w@$|€]*?[^\W\d_])(?=[\w@$|€]*?[\d@$|€])[\w@$|€]+")
# Runs of single letters separated by spaces or punctuation: "b o m b", "b.o.m.b", "b-o-m-b".
_SPACED = re.compile(r"(?<![\w])(?:[^\W_][ .\-_*·/\\]{1,3}){2,}[^\W_](?![\w])")
_SEPARATORS = re.compile(r"[ .\-_*·/\\]")
_WS = re.compile(r"\s+")


def sanitize(text: str | bytes) -> str:
    """Any input to a clean ``str``: bytes are decoded as UTF-8 with invalid sequences replaced,
    lone surrogates replaced, control characters (other than tab and newlines) removed."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = bytes(text).decode("utf-8", errors="replace")
    elif not isinstance(text, str):
        raise TypeError(f"text must be str or bytes, got {type(text).__name__}")
    text = text.encode("utf-8", errors="replace").decode("utf-8")
    return _CONTROL.sub("", text)


def _deleet(match: re.Match) -> str:
    return match.group(0).translate(_LEET)


def normalize(text: str) -> str:
    """The canonical form classifiers see: NFKC (full-width and compatibility forms), homoglyphs
    to Latin, invisible characters removed, lower case, leetspeak undone inside words, spaced-out
    letters joined, whitespace collapsed. Chinese text passes through unchanged except for NFKC."""
    text = unicodedata.normalize("NFKC", _INVISIBLE.sub("", text)).lower().translate(_HOMOGLYPHS)
    text = _LEET_WORD.sub(_deleet, text)
    text = _SPACED.sub(lambda m: _SEPARATORS.sub("", m.group(0)), text)
    return _WS.sub(" ", text).strip()


_B64 = re.compile(r"(?<![A-Za-z0-9+/=_\-])[A-Za-z0-9+/_\-]{16,}={0,2}(?![A-Za-z0-9+/=_\-])")  # standard or URL-safe
_HEX = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}[ :]?){8,}(?![0-9A-Fa-f])")
_URLQ = re.compile(r"(?:%[0-9A-Fa-f]{2}){4,}")
_ROT13_HINT = re.compile(r"rot-?13|caesar|凯撒", re.IGNORECASE)


def _printable(decoded: bytes) -> str | None:
    try:
        s = decoded.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(s) < 4:
        return None
    good = sum(c.isprintable() or c in "\n\t" for c in s)
    letters = sum(c.isalpha() for c in s)
    return s if good >= 0.95 * len(s) and letters >= 0.5 * len(s.replace(" ", "")) else None


def decode_payloads(text: str, max_depth: int = 2) -> list[str]:
    """Texts hidden inside ``text`` as base64 (standard or URL-safe), hex, URL escapes or
    ROT13 (only when the text mentions ROT13 or a Caesar cipher); decoded recursively up to
    ``max_depth`` levels. Returns only decodings that are readable text."""
    found: list[str] = []
    frontier = [text]
    for _ in range(max_depth):
        nxt: list[str] = []
        for t in frontier:
            for m in _B64.finditer(t):
                raw = m.group(0)
                urlsafe = "-" in raw or "_" in raw
                if urlsafe and ("+" in raw or "/" in raw):
                    continue
                try:
                    dec = base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_" if urlsafe else None,
                                           validate=True)
                except (binascii.Error, ValueError):
                    continue
                if (s := _printable(dec)) is not None:
                    nxt.append(s)
            for m in _HEX.finditer(t):
                try:
                    dec = bytes.fromhex(re.sub(r"[ :]", "", m.group(0)))
                except ValueError:
                    continue
                if (s := _printable(dec)) is not None:
                    nxt.append(s)
            for m in _URLQ.finditer(t):
                s = unquote(m.group(0))
                if s != m.group(0):
                    nxt.append(s)
            if _ROT13_HINT.search(t):
                nxt.append(codecs.decode(t, "rot13"))
        nxt = [s for s in dict.fromkeys(nxt) if s not in found and s != text]
        found.extend(nxt)
        frontier = nxt
        if not frontier:
            break
    return found
