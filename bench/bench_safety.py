"""RAISE latency on one CPU core: input screening, output screening and the streaming guard.

    pytest bench/bench_safety.py --benchmark-only

Targets (issue 7): ``check_input`` under 2 ms per 1,000 characters; ``guard_stream`` adds well
under a millisecond per chunk. Texts: 1,000 characters of standard-library prose (English),
1,000 characters of Chinese, and a 60-character prompt.
"""

import pytest

from yilightning.data import stdlib_documents
from yilightning.safety import RAISE

ZH = "我想了解一下如何安全地保存处方药，以及家里有孩子的时候应该注意什么。另外，请推荐几本关于育儿的书。"
TEXTS = {
    "en-1000": " ".join(d.text for d in stdlib_documents(max_docs=200))[:1000],
    "zh-1000": (ZH * 40)[:1000],
    "prompt-60": "How do I keep my prescription medicine away from my kids?",
}


@pytest.fixture(scope="module")
def engine() -> RAISE:
    return RAISE()


@pytest.mark.parametrize("text", list(TEXTS))
@pytest.mark.parametrize("check", ["check_input", "check_output"])
def test_check(benchmark, engine, check, text):
    verdict = benchmark(getattr(engine, check), TEXTS[text])
    assert verdict.safe


def test_guard_stream_per_20_chars(benchmark, engine):
    """One 2,000-character response in 100 chunks of 20 characters; time per whole stream."""
    text = (TEXTS["en-1000"] * 2)[:2000]
    chunks = [text[i:i + 20] for i in range(0, len(text), 20)]
    out = benchmark(lambda: "".join(engine.guard_stream(chunks)))
    assert len(out) >= 1900
