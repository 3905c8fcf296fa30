import json

import pytest

from yilightning.data import Decontaminator, Document, MinHashDedup, QualityConfig, clean_corpus, quality_issue

PROSE = ("The standard library provides modules for reading files, parsing arguments and talking to the "
         "network. Each module documents its functions with examples that show typical use. Modules are grouped "
         "by topic: text processing, binary data, data types, numeric and mathematical modules, functional "
         "programming, file and directory access, persistence, compression, file formats and cryptography.")


@pytest.mark.parametrize("text, reason", [
    ("too short", "length"),
    ("#$%^&*()!@#$%^&*()_+{}|:<>?" * 5, "symbols"),
    ("same line here\n" * 10, "repetition"),
    ("spam " * 100, "repetition"),
    ("1 2 3 4 5 6 7 8 9 0 " * 2 + " " * 60, "language"),
    (PROSE, None),
    ("Question: what is 1234 + 56? Answer: 1234 + 56 = 1290. And 7 * 8 = 56.", None),
])
def test_quality_issue(text, reason):
    assert quality_issue(text) == reason


def test_degenerate_settings():
    """Found by fuzzing: ZeroDivisionErrors, and a non-UTF-8 benchmark file raised where the
    readers replace bad bytes."""
    assert quality_issue("", QualityConfig(min_chars=0)) == "length"
    with pytest.raises(ValueError, match="must be >= 1"):
        MinHashDedup(num_perm=0, bands=0)


def test_minhash_finds_near_duplicates_only():
    m = MinHashDedup()
    base = PROSE * 3
    assert not m.is_duplicate(base)
    assert m.is_duplicate(base.replace("network", "internet", 1))  # one word changed
    assert not m.is_duplicate("A completely different text about cooking rice, baking bread and brewing tea at home.")
    assert not m.is_duplicate("Sam has 12 books and buys 3 more, then gives away 3. Sam now has 12 books.")
    assert not m.is_duplicate("Sam has 97 coins and buys 5 more, then gives away 5. Sam now has 97 coins.")
    with pytest.raises(ValueError, match="multiple of bands"):
        MinHashDedup(num_perm=10, bands=3)


def test_decontamination_reads_bad_bytes_as_the_readers_do(tmp_path):
    bench = " ".join(f"w{i}" for i in range(40))
    (tmp_path / "bench.txt").write_bytes(b"\xff\xfe " + bench.encode())
    assert Decontaminator.from_file(tmp_path / "bench.txt").contaminated("x " + bench + " y")


def test_decontamination_uses_30_word_spans(tmp_path):
    bench = " ".join(f"w{i}" for i in range(40))
    d = Decontaminator([bench])
    assert d.contaminated("intro " + " ".join(f"w{i}" for i in range(5, 35)) + " outro")  # 30 shared words
    assert not d.contaminated(" ".join(f"w{i}" for i in range(5, 34)))  # only 29
    path = tmp_path / "bench.jsonl"
    path.write_text(json.dumps({"question": bench, "id": 1}) + "\n\n")
    assert Decontaminator.from_file(path).contaminated(bench)
    (tmp_path / "bench.txt").write_text(bench + "\n")
    assert Decontaminator.from_file(tmp_path / "bench.txt").contaminated(bench)
    (tmp_path / "bad.jsonl").write_text('{"question": "x"}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2 is not valid JSON"):
        Decontaminator.from_file(tmp_path / "bad.jsonl")
    with pytest.raises(FileNotFoundError, match="no benchmark file"):
        Decontaminator.from_file(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="no span of 10"):
        Decontaminator(["too short"])


def test_decontamination_of_short_items_and_across_fields(tmp_path):
    question = "What is the capital city of the small country that lies between France and Spain?"
    d = Decontaminator([question])  # 15 words: matched as a whole, in a row
    assert d.contaminated("Quiz. " + question.upper() + " Answer: Andorra la Vella.")
    assert not d.contaminated("What is the capital city of the small country between France and Spain?")
    path = tmp_path / "bench.jsonl"
    words = [f"q{i}" for i in range(20)], [f"a{i}" for i in range(15)]
    path.write_text(json.dumps({"question": " ".join(words[0]), "answer": " ".join(words[1])}) + "\n")
    doc = "intro " + " ".join(words[0][5:] + words[1][:15]) + " outro"  # 30 words spanning both fields
    assert Decontaminator.from_file(path).contaminated(doc)


def test_clean_corpus_counts_every_stage():
    bench = " ".join(f"token{i}" for i in range(40))
    docs = [Document(PROSE, "a"), Document(PROSE.upper().replace(". ", ".  "), "exact"),
            Document(PROSE.replace("cryptography", "ciphers"), "near"), Document("short", "len"),
            Document("Benchmark leak: " + bench, "leak"), Document("Another fine document about gardening, "
                                                                 "tomatoes, soil, watering and sunlight.", "b")]

    def hook(stream):  # a pluggable filter with stats, like yilightning.safety.filter_corpus
        class Hook:
            class stats:
                dropped = 1

                @staticmethod
                def summary():
                    return "hook: dropped 1"

            def __iter__(self):
                return (d for d in stream if d.source != "b")
        return Hook()

    cleaned = clean_corpus(iter(docs), decontaminate=Decontaminator([bench]), hook=hook)
    assert [d.source for d in cleaned] == ["a"]
    r = cleaned.report
    assert (r.seen, r.kept) == (6, 1)
    assert r.dropped == {"exact duplicate": 1, "near duplicate": 1, "quality:length": 1, "benchmark 30-gram": 1,
                         "safety": 1}
    assert r.lines()[1] == "hook: dropped 1"
    assert [d.source for d in clean_corpus(docs, quality=None, dedup=False, near_dedup=False)] == \
        [d.source for d in docs]
    assert QualityConfig().min_chars == 50
