import gzip
import json

import pytest

from yilightning.data import read_documents


def test_reads_text_jsonl_gz_and_parquet_from_a_folder(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.txt").write_text("first document\nsecond line\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "from jsonl", "id": 1}) + "\n\n" + json.dumps({"text": "two"}) + "\n")
    with gzip.open(tmp_path / "c.jsonl.gz", "wt") as f:
        f.write(json.dumps({"text": "compressed"}) + "\n")
    pq.write_table(pa.table({"text": ["p0", None, "p2"], "n": [0, 1, 2]}), tmp_path / "d.parquet", row_group_size=2)
    (tmp_path / "ignored.bin").write_bytes(b"\x00")
    docs = list(read_documents(tmp_path, batch_rows=1))
    assert [d.text for d in docs] == ["first document\nsecond line", "from jsonl", "two", "compressed", "p0", "p2"]
    assert docs[1].source.endswith("b.jsonl:1") and docs[5].source.endswith("d.parquet:2")


def test_long_text_is_cut_at_paragraph_breaks(tmp_path):
    para = "word " * 100 + "\n\n"
    (tmp_path / "book.txt").write_text(para * 50)
    docs = list(read_documents(tmp_path / "book.txt", max_chars=2000))
    assert len(docs) > 1 and all(len(d.text) <= 2000 for d in docs)
    assert sum(d.text.count("word") for d in docs) == 5000  # nothing lost


def test_reading_is_lazy(tmp_path):
    with open(tmp_path / "big.jsonl", "w") as f:
        for i in range(100_000):
            f.write(json.dumps({"text": f"doc {i}"}) + "\n")
    it = read_documents(tmp_path / "big.jsonl")
    assert next(it).text == "doc 0"  # the first record arrives before the file is read


def test_bad_input_names_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file or folder"):
        list(read_documents(tmp_path / "missing.jsonl"))
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(ValueError, match="unknown type"):
        list(read_documents(tmp_path / "x.csv"))
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{broken\n')
    with pytest.raises(ValueError, match="bad.jsonl:2 is not valid JSON"):
        list(read_documents(tmp_path / "bad.jsonl"))
    (tmp_path / "field.jsonl").write_text('{"content": "x"}\n')
    with pytest.raises(ValueError, match="no string field 'text'"):
        list(read_documents(tmp_path / "field.jsonl"))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "col.parquet")
    with pytest.raises(ValueError, match="no column 'text'"):
        list(read_documents(tmp_path / "col.parquet"))


def test_parquet_bytes_are_text_and_other_columns_are_refused(tmp_path):
    """Found by fuzzing: a binary column gave documents like "b'...'", a list column "['a', 'b']"."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": pa.array([b"caf\xc3\xa9", b"bad \xff"], pa.binary())}), tmp_path / "b.parquet")
    assert [d.text for d in read_documents(tmp_path / "b.parquet")] == ["café", "bad \ufffd"]
    pq.write_table(pa.table({"text": pa.array(["x", "y", "x"]).dictionary_encode()}), tmp_path / "c.parquet")
    assert [d.text for d in read_documents(tmp_path / "c.parquet")] == ["x", "y", "x"]  # a pandas category
    pq.write_table(pa.table({"text": [["a", "b"]], "n": [1]}), tmp_path / "l.parquet")
    with pytest.raises(ValueError, match="column .text. holds list<.*string>, not text"):
        list(read_documents(tmp_path / "l.parquet"))


def test_corrupt_files_are_named_and_a_bom_is_skipped(tmp_path):
    """Found by fuzzing: a bare EOFError / BadGzipFile / ArrowInvalid without the file's name,
    and a UTF-8 BOM read as bad JSON."""
    import gzip

    (tmp_path / "bom.jsonl").write_bytes(b'\xef\xbb\xbf{"text": "x"}\n')
    assert [d.text for d in read_documents(tmp_path / "bom.jsonl")] == ["x"]
    whole = gzip.compress(b'{"text": "x"}\n' * 100)
    (tmp_path / "cut.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "plain.jsonl.gz").write_bytes(b'{"text": "x"}\n')
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    for name, words in (("cut.jsonl.gz", "not a complete gzip file"), ("plain.jsonl.gz", "not a complete gzip file"),
                        ("junk.parquet", "not a readable Parquet file")):
        with pytest.raises(ValueError, match=f"{name} is {words}"):
            list(read_documents(tmp_path / name))
