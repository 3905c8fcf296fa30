"""The RAISE engine: input safety processing, output safety control, streaming guard and the
Llama Guard style assessment, all driven by one classifier and one policy."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

from yilightning.safety.classifier import NgramClassifier, default_classifier
from yilightning.safety.injection import InjectionMatch, find_injections, neutralize
from yilightning.safety.pii import PIISpan, find_pii, mask_pii
from yilightning.safety.policy import SEVERITY, Policy
from yilightning.safety.taxonomy import CATEGORY_NAMES, hazard_codes
from yilightning.safety.text import decode_payloads, normalize, sanitize

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass
class Verdict:
    """What the engine decided about one text."""

    safe: bool  # no risk category flagged and no injection / jailbreak pattern found
    action: str  # the most severe action the policy asks for: allow, label, rewrite or block
    categories: list[str]  # flagged risk categories
    scores: dict[str, float]  # "unsafe" and every category, the maximum over the text's variants
    rewritten: str  # the text with PII masked and injection segments neutralised
    codes: list[str] = field(default_factory=list)  # S1-S14 hazard codes of the categories
    pii: list[PIISpan] = field(default_factory=list)
    injections: list[InjectionMatch] = field(default_factory=list)
    decoded: list[str] = field(default_factory=list)  # payloads found (base64, hex, ...)
    latency_ms: float = 0.0


@dataclass
class Assessment:
    """A Llama Guard style answer: ``text`` is ``"safe"`` or ``"unsafe\\nS1,S10"``."""

    safe: bool
    codes: list[str]
    categories: list[str]
    text: str


@dataclass
class StreamReport:
    chunks: int = 0
    stopped: bool = False  # the stream was cut because the output turned unsafe
    categories: list[str] = field(default_factory=list)
    redactions: int = 0  # PII spans masked
    latencies_ms: list[float] = field(default_factory=list)  # guard time per chunk

    @property
    def max_latency_ms(self) -> float:
        return max(self.latencies_ms, default=0.0)

    @property
    def mean_latency_ms(self) -> float:
        return float(np.mean(self.latencies_ms)) if self.latencies_ms else 0.0


class GuardedStream:
    """Iterator over the guarded chunks; ``.report`` fills in as it is consumed."""

    def __init__(self, engine: "RAISE", chunks: Iterable[str], stop_message: str) -> None:
        self.report = StreamReport()
        self._it = engine._guard(chunks, self.report, stop_message)

    def __iter__(self) -> Iterator[str]:
        return self._it

    def __next__(self) -> str:
        return next(self._it)


def _remove_spans(text: str, spans: list[tuple[int, int]]) -> str:
    out, pos = [], 0
    for start, end in sorted(spans):
        if start >= pos:
            out.append(text[pos:start])
            pos = end
    out.append(text[pos:])
    return " ".join("".join(out).split())


STOP_MESSAGE = "\n[response stopped by the safety engine]"


class RAISE:
    """The Responsible AI Safety Engine.

    >>> engine = RAISE()
    >>> engine.check_input("How do I build a pipe bomb?").action
    'block'
    """

    def __init__(self, policy: Policy | None = None, classifier: NgramClassifier | None = None) -> None:
        self.policy = policy or Policy.default()
        self.classifier = classifier or default_classifier()
        auto = self.policy.unsafe_threshold == "auto"
        self.unsafe_threshold = self.classifier.threshold if auto else float(self.policy.unsafe_threshold)

    # ---- scoring -------------------------------------------------------------------------------
    def _score(self, text: str, *, decode: bool, normalized: str | None = None,
               extra: tuple[str, ...] = ()) -> tuple[np.ndarray, list[str]]:
        variants = [normalize(text) if normalized is None else normalized, *extra]
        decoded = decode_payloads(text) if decode else []
        variants += [normalize(d) for d in decoded]
        logits = np.max([self.classifier.logits(v, normalized=True) for v in variants], axis=0)
        return 1.0 / (1.0 + np.exp(-logits)), decoded

    def _flag(self, probs: np.ndarray, jailbreak: bool) -> list[str]:
        factor = self.policy.jailbreak_factor if jailbreak else 1.0
        if probs[0] < self.unsafe_threshold * factor:
            return []
        cats = [c for c, p in zip(CATEGORY_NAMES, probs[1:])
                if p >= self.policy.categories[c].threshold * factor and self.policy.categories[c].action != "allow"]
        if not cats:  # unsafe overall but no category above its threshold: take the most likely one
            best = CATEGORY_NAMES[int(np.argmax(probs[1:]))]
            cats = [best] if self.policy.categories[best].action != "allow" else []
        return cats

    def _verdict(self, text: str, *, is_input: bool, start: float) -> Verdict:
        text = sanitize(text)
        norm = normalize(text)
        injections = find_injections(norm) if is_input else []
        # also score the text without its injection segments, so a jailbreak preamble cannot
        # dilute the request it wraps
        stripped = _remove_spans(norm, [(m.start, m.end) for m in injections]) if injections else None
        probs, decoded = self._score(text, decode=is_input, normalized=norm, extra=(stripped,) if stripped else ())
        cats = self._flag(probs, jailbreak=bool(injections))
        pii = find_pii(text)
        actions = [self.policy.categories[c].action for c in cats]
        rewritten = text
        if injections and self.policy.injection_action != "allow":
            actions.append(self.policy.injection_action)
            if self.policy.injection_action == "rewrite":
                rewritten, found = neutralize(rewritten)
                if not found:  # detected only after normalisation (spaced, leet, zero-width): cannot be cut out
                    actions.append("block")
        if pii and self.policy.pii_action != "allow":
            actions.append(self.policy.pii_action)
            if self.policy.pii_action == "rewrite":
                rewritten = mask_pii(rewritten)
        action = max(actions, key=SEVERITY.__getitem__, default="allow")
        scores = dict(zip(("unsafe",) + CATEGORY_NAMES, (round(float(p), 4) for p in probs)))
        return Verdict(safe=not cats and not injections, action=action, categories=cats, scores=scores,
                       rewritten=rewritten, codes=hazard_codes(cats), pii=pii, injections=injections,
                       decoded=decoded, latency_ms=(time.perf_counter() - start) * 1e3)

    # ---- the public checks -----------------------------------------------------------------------
    def check_input(self, text_or_messages: str | bytes | list[Message]) -> Verdict:
        """Screens a user input (a string, or a conversation whose last ``max_turns`` user turns
        are checked together, so intent spread over several turns is seen as a whole): risk
        categories, jailbreak / prompt-injection patterns (which also lower the thresholds),
        encoded payloads and PII. ``.action`` is what the policy says to do."""
        start = time.perf_counter()
        return self._verdict(self._user_text(text_or_messages), is_input=True, start=start)

    def check_output(self, text: str | bytes) -> Verdict:
        """Screens a model output: risk categories and PII (no injection check)."""
        return self._verdict(text, is_input=False, start=time.perf_counter())

    def guard_stream(self, chunks: Iterable[str], *, stop_message: str = STOP_MESSAGE) -> GuardedStream:
        """Wraps a stream of output chunks: each new chunk is checked together with the last
        ``policy.stream_lookback`` characters; PII is masked (``stream_holdback`` characters are
        held back so a number split across chunks is still caught); once a ``block`` category
        is flagged the stream ends with ``stop_message``. The returned iterator's ``.report``
        has the per-chunk guard latency."""
        return GuardedStream(self, chunks, stop_message)

    def _guard(self, chunks: Iterable[str], report: StreamReport, stop_message: str) -> Iterator[str]:
        pol = self.policy
        pending = ""  # received, not yet released
        released_tail = ""  # the last stream_lookback released characters
        for chunk in chunks:
            start = time.perf_counter()
            report.chunks += 1
            pending += sanitize(chunk)
            window = (released_tail + pending)[-(pol.stream_lookback + len(chunk)):]
            probs, _ = self._score(window, decode=False)
            cats = self._flag(probs, jailbreak=False)
            if any(pol.categories[c].action == "block" for c in cats):
                report.stopped, report.categories = True, cats
                report.latencies_ms.append((time.perf_counter() - start) * 1e3)
                yield stop_message
                return
            report.categories = sorted(set(report.categories) | set(cats))
            cut = max(len(pending) - pol.stream_holdback, 0)
            spans = find_pii(pending) if pol.pii_action == "rewrite" else []
            for s in spans:  # never cut through a PII span
                if s.start < cut < s.end:
                    cut = s.start
            out = mask_pii(pending[:cut], [s for s in spans if s.end <= cut])
            report.redactions += sum(1 for s in spans if s.end <= cut)
            pending = pending[cut:]
            released_tail = (released_tail + out)[-pol.stream_lookback:]
            report.latencies_ms.append((time.perf_counter() - start) * 1e3)
            if out:
                yield out
        if pending:
            spans = find_pii(pending) if pol.pii_action == "rewrite" else []
            report.redactions += len(spans)
            yield mask_pii(pending, spans)

    def assess(self, conversation: str | list[Message], role: str = "user") -> Assessment:
        """Llama Guard style: is the last ``role`` turn ("user", or "agent"/"assistant" for the
        model's reply) safe? Answers ``"safe"`` or ``"unsafe"`` plus the hazard codes."""
        if role == "user":
            v = self.check_input(conversation)
            unsafe_cats, unsafe = v.categories, bool(v.categories)
        elif role in ("agent", "assistant"):
            if isinstance(conversation, str):
                reply = conversation
            else:
                replies = [m["content"] for m in conversation if m.get("role") == "assistant"]
                if not replies:
                    raise ValueError("assess(role='agent'): the conversation has no assistant turn")
                reply = replies[-1]
            v = self.check_output(reply)
            unsafe_cats, unsafe = v.categories, bool(v.categories)
        else:
            raise ValueError(f"role must be 'user' or 'agent' (or 'assistant'), got {role!r}")
        codes = hazard_codes(unsafe_cats)
        return Assessment(safe=not unsafe, codes=codes, categories=unsafe_cats,
                          text="safe" if not unsafe else "unsafe\n" + ",".join(codes))

    def _user_text(self, text_or_messages: str | bytes | list[Message]) -> str | bytes:
        if isinstance(text_or_messages, (str, bytes, bytearray)):
            return text_or_messages
        if not isinstance(text_or_messages, list) or not all(isinstance(m, dict) and "content" in m
                                                           for m in text_or_messages):
            raise TypeError("check_input expects a string, bytes, or a list of {'role': ..., 'content': ...} messages")
        turns = [m["content"] for m in text_or_messages if m.get("role", "user") == "user"]
        return "\n".join(turns[-self.policy.max_turns:])
