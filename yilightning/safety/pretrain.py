"""RAISE component 1, pre-training safety: a streaming corpus filter that drops unsafe
documents and scrubs PII, counting what it did."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator

from yilightning.safety.pii import mask_pii
from yilightning.safety.text import sanitize


@dataclass
class FilterStats:
    seen: int = 0
    kept: int = 0
    dropped: int = 0
    dropped_by_category: Counter = field(default_factory=Counter)
    pii_scrubbed: int = 0  # documents in which PII was masked
    pii_by_kind: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        cats = ", ".join(f"{c} {n}" for c, n in self.dropped_by_category.most_common()) or "none"
        kinds = ", ".join(f"{k} {n}" for k, n in self.pii_by_kind.most_common()) or "none"
        return (f"safety filter: {self.seen} documents, kept {self.kept}, dropped {self.dropped} as unsafe ({cats}); "
                f"PII masked in {self.pii_scrubbed} documents ({kinds})")


class CorpusFilter:
    """Iterator over the kept documents; ``.stats`` fills in as it is consumed."""

    def __init__(self, engine, docs: Iterable, scrub_pii: bool) -> None:
        self.stats = FilterStats()
        self._it = self._run(engine, docs, scrub_pii)

    def __iter__(self) -> Iterator:
        return self._it

    def __next__(self):
        return next(self._it)

    def _run(self, engine, docs: Iterable, scrub_pii: bool) -> Iterator:
        st = self.stats
        for doc in docs:
            st.seen += 1
            text = doc if isinstance(doc, (str, bytes)) else getattr(doc, "text", None)
            if not isinstance(text, (str, bytes)):
                raise TypeError(f"filter_corpus: documents must be str, bytes or have a .text attribute, got "
                                f"{type(doc).__name__}")
            text = sanitize(text)
            verdict = engine.check_output(text)
            if any(engine.policy.categories[c].action in ("block", "rewrite") for c in verdict.categories):
                st.dropped += 1
                st.dropped_by_category.update(verdict.categories)
                continue
            if scrub_pii and verdict.pii:
                st.pii_scrubbed += 1
                st.pii_by_kind.update(s.kind for s in verdict.pii)
                text = mask_pii(text, verdict.pii)
            st.kept += 1
            if isinstance(doc, (str, bytes)):
                yield text
            else:
                yield replace(doc, text=text) if hasattr(doc, "__dataclass_fields__") else text


def filter_corpus(docs: Iterable, engine=None, *, scrub_pii: bool = True) -> CorpusFilter:
    """Streams ``docs`` (strings, bytes, or objects with a ``.text`` such as
    :class:`yilightning.data.Document`), dropping those the engine flags with a ``block`` or
    ``rewrite`` category and masking PII in the rest. Nothing is held in memory; read
    ``.stats`` after (or during) iteration.

    >>> kept = filter_corpus(["a recipe for bread", "mail me: a@b.com"])
    >>> list(kept), kept.stats.pii_scrubbed
    (['a recipe for bread', 'mail me: [EMAIL]'], 1)
    """
    if engine is None:
        from yilightning.safety.engine import RAISE

        engine = RAISE()
    return CorpusFilter(engine, docs, scrub_pii)
