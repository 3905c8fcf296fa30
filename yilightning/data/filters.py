"""Corpus cleaning before tokenisation (the report's pre-training data processing): quality
heuristics, exact and MinHash near-duplicate removal, and decontamination against benchmark
text (any shared word 30-gram drops the document). Every stage streams and counts what it
removed in a :class:`DataReport`; a safety hook (RAISE's ``filter_corpus``) plugs in last."""

from __future__ import annotations

import hashlib
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from yilightning.data.corpus import Document
from yilightning.data.readers import jsonl_records

_WORDS = re.compile(r"\w+")


@dataclass
class QualityConfig:
    min_chars: int = 50  # shorter documents carry too little text
    max_symbol_ratio: float = 0.25  # share of characters that are neither letters, digits nor whitespace
    max_duplicate_line_ratio: float = 0.3  # share of non-empty lines that repeat an earlier line
    max_top_word_ratio: float = 0.2  # share of all words taken by the most frequent word (with >= 50 words)
    min_letter_ratio: float = 0.3  # share of characters in a script's letters (Latin, CJK, ...) or digits


def quality_issue(text: str, cfg: QualityConfig = QualityConfig()) -> str | None:
    """Why ``text`` fails the quality heuristics (``"length"``, ``"symbols"``, ``"repetition"``,
    ``"language"``), or ``None`` when it passes."""
    n = len(text)
    if n < cfg.min_chars or n == 0:  # (min_chars=0 keeps no empty document either)
        return "length"
    letters = sum(c.isalnum() for c in text)
    spaces = sum(c.isspace() for c in text)
    if (n - letters - spaces) / n > cfg.max_symbol_ratio:
        return "symbols"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) >= 4 and 1 - len(set(lines)) / len(lines) > cfg.max_duplicate_line_ratio:
        return "repetition"
    words = _WORDS.findall(text.lower())
    if len(words) >= 50 and Counter(words).most_common(1)[0][1] / len(words) > cfg.max_top_word_ratio:
        return "repetition"
    if letters / n < cfg.min_letter_ratio:
        return "language"
    return None


def _shingles(text: str, n: int) -> np.ndarray:
    words = _WORDS.findall(text.lower())
    if len(words) < n:
        words = words + [""] * (n - len(words))
    grams = {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}
    return np.fromiter((zlib.crc32(g.encode()) for g in grams), dtype=np.uint64, count=len(grams))


class MinHashDedup:
    """Near-duplicate detection with MinHash signatures over word ``shingle``-grams and LSH
    banding: a document whose estimated Jaccard similarity with an earlier kept document is at
    least ``threshold`` is a duplicate."""

    def __init__(self, num_perm: int = 64, bands: int = 16, shingle: int = 5, threshold: float = 0.8,
                 seed: int = 0) -> None:
        if bands < 1 or num_perm < 1 or shingle < 1:
            raise ValueError(f"MinHashDedup: num_perm, bands and shingle must be >= 1, got {num_perm}, {bands}, "
                             f"{shingle}")
        if num_perm % bands:
            raise ValueError(f"MinHashDedup: num_perm ({num_perm}) must be a multiple of bands ({bands})")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"MinHashDedup: threshold must lie in (0, 1], got {threshold}")
        rng = np.random.default_rng(seed)  # one multiply-add-xorshift hash (mod 2^64) per permutation
        self.a = rng.integers(0, np.iinfo(np.uint64).max, num_perm, dtype=np.uint64, endpoint=True) | np.uint64(1)
        self.b = rng.integers(0, np.iinfo(np.uint64).max, num_perm, dtype=np.uint64, endpoint=True)
        self.bands, self.rows, self.shingle, self.threshold = bands, num_perm // bands, shingle, threshold
        self.buckets: dict[tuple[int, bytes], list[int]] = {}
        self.signatures: list[np.ndarray] = []

    def signature(self, text: str) -> np.ndarray:
        sh = _shingles(text, self.shingle)
        with np.errstate(over="ignore"):
            x = sh[None, :] * self.a[:, None] + self.b[:, None]
            x ^= x >> np.uint64(31)
            x *= np.uint64(0x94D049BB133111EB)
            x ^= x >> np.uint64(29)
        return x.min(axis=1)

    def is_duplicate(self, text: str) -> bool:
        """Checks ``text`` against the documents kept so far and, if it is new, keeps it."""
        sig = self.signature(text)
        keys = [(i, sig[i * self.rows:(i + 1) * self.rows].tobytes()) for i in range(self.bands)]
        for key in keys:
            for j in self.buckets.get(key, ()):
                if (self.signatures[j] == sig).mean() >= self.threshold:
                    return True
        idx = len(self.signatures)
        self.signatures.append(sig)
        for key in keys:
            self.buckets.setdefault(key, []).append(idx)
        return False


class Decontaminator:
    """Drops documents that share any word ``n``-gram (30 in the report) with benchmark text.
    A benchmark item shorter than ``n`` words (but at least ``min_words``) matches when all of
    its words appear in a document in order and in a row; shorter items are too generic to use."""

    def __init__(self, benchmark_texts: Iterable[str], n: int = 30, min_words: int = 10) -> None:
        self.n = n
        self.grams: dict[int, set[int]] = {}  # span length -> hashed spans of that many words
        for t in benchmark_texts:
            w = _WORDS.findall(t.lower())
            if len(w) >= n:
                self.grams.setdefault(n, set()).update(self._spans(w, n))
            elif len(w) >= min_words:
                self.grams.setdefault(len(w), set()).add(hash(" ".join(w)))
        if not self.grams:
            raise ValueError(f"Decontaminator: the benchmark text has no span of {min(n, min_words)}+ words; pass "
                             "longer texts or a smaller n / min_words")

    @staticmethod
    def _spans(words: list[str], n: int) -> set[int]:
        return {hash(" ".join(words[i:i + n])) for i in range(len(words) - n + 1)}

    def contaminated(self, text: str) -> bool:
        w = _WORDS.findall(text.lower())
        return any(not grams.isdisjoint(self._spans(w, n)) for n, grams in self.grams.items())

    @classmethod
    def from_file(cls, path: str | Path, n: int = 30, field_names: tuple[str, ...] = ("text", "question", "prompt",
                                                                                       "answer", "solution")):
        """Benchmark text from a ``.jsonl`` file (the named fields of each record, joined) or any
        other text file (one example per line)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"Decontaminator: no benchmark file {path}")
        if path.suffix == ".jsonl":  # a record's fields as one text: spans may cross them
            texts = [" ".join(str(rec[f]) for f in field_names if f in rec)
                     for _, rec in jsonl_records(path, "Decontaminator") if isinstance(rec, dict)]
        else:
            texts = path.read_text(encoding="utf-8", errors="replace").splitlines()  # as the readers do
        return cls(texts, n)


@dataclass
class DataReport:
    seen: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> documents
    hook_summary: str = ""  # what the safety hook reported

    def lines(self) -> list[str]:
        reasons = ", ".join(f"{r} {n}" for r, n in self.dropped.most_common()) or "none"
        out = [f"cleaning: {self.seen} documents, kept {self.kept}; dropped: {reasons}"]
        return out + ([self.hook_summary] if self.hook_summary else [])


class CleanCorpus:
    """Iterator over the cleaned documents; ``.report`` fills in as it is consumed."""

    def __init__(self, docs: Iterable[Document], quality: QualityConfig | None, dedup: bool, near_dedup: bool,
                 decontaminate: Decontaminator | None, hook: Callable[[Iterable[Document]], Iterable[Document]] | None):
        self.report = DataReport()
        stream = self._stages(docs, quality, dedup, MinHashDedup() if near_dedup else None, decontaminate)
        self._hooked = hook(stream) if hook is not None else stream
        self._it = self._finish()

    def _stages(self, docs, quality, dedup, minhash, decon) -> Iterator[Document]:
        rep, exact = self.report, set()
        for doc in docs:
            rep.seen += 1
            if quality is not None and (reason := quality_issue(doc.text, quality)):
                rep.dropped[f"quality:{reason}"] += 1
                continue
            if dedup:
                key = hashlib.sha1(" ".join(doc.text.lower().split()).encode()).digest()
                if key in exact:
                    rep.dropped["exact duplicate"] += 1
                    continue
                exact.add(key)
            if minhash is not None and minhash.is_duplicate(doc.text):
                rep.dropped["near duplicate"] += 1
                continue
            if decon is not None and decon.contaminated(doc.text):
                rep.dropped["benchmark 30-gram"] += 1
                continue
            yield doc

    def _finish(self) -> Iterator[Document]:
        for doc in self._hooked:
            self.report.kept += 1
            yield doc
        stats = getattr(self._hooked, "stats", None)
        if stats is not None and hasattr(stats, "summary"):
            self.report.hook_summary = stats.summary()
            if getattr(stats, "dropped", 0):
                self.report.dropped["safety"] += stats.dropped

    def __iter__(self) -> Iterator[Document]:
        return self._it

    def __next__(self) -> Document:
        return next(self._it)


def clean_corpus(docs: Iterable[Document], *, quality: QualityConfig | None = QualityConfig(), dedup: bool = True,
                 near_dedup: bool = True, decontaminate: Decontaminator | None = None,
                 hook: Callable[[Iterable[Document]], Iterable[Document]] | None = None) -> CleanCorpus:
    """Streams ``docs`` through quality heuristics, exact dedup, MinHash near-dedup,
    decontamination and finally ``hook`` (e.g. ``yilightning.safety.filter_corpus``, whose
    ``.stats.summary()`` lands in the report). Pass ``None``/``False`` to skip a stage."""
    return CleanCorpus(docs, quality, dedup, near_dedup, decontaminate, hook)
