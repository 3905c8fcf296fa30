"""Streaming corpus readers: plain-text files, JSONL (optionally gzip-compressed) and Parquet.
Nothing is read ahead, so a corpus larger than memory streams through the cleaning stages."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Iterable, Iterator

from yilightning.data.corpus import Document

TEXT_SUFFIXES = (".txt", ".md", ".rst")


def _files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.is_file() and _kind(f) is not None)
        elif p.is_file():
            if _kind(p) is None:
                raise ValueError(f"read_documents: {p} has an unknown type; use {', '.join(TEXT_SUFFIXES)}, "
                                 ".jsonl, .jsonl.gz or .parquet")
            yield p
        else:
            raise FileNotFoundError(f"read_documents: no file or folder {p}")


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    return None


def _text_file(path: Path, max_chars: int) -> Iterator[Document]:
    """One document per file; a longer file is cut at paragraph breaks into documents of at most
    ``max_chars`` (a single longer paragraph stays whole)."""
    doc: list[str] = []  # finished paragraphs of the current document
    para: list[str] = []  # lines of the paragraph being read
    size, part = 0, 0

    def flush_paragraph() -> Iterator[Document]:
        nonlocal doc, para, size, part
        text = "".join(para)
        para = []
        if not text.strip():
            doc.append(text)
            size += len(text)
            return
        if doc and size + len(text) > max_chars and "".join(doc).strip():
            yield Document("".join(doc).strip(), f"{path}#{part}")
            doc, size, part = [], 0, part + 1
        doc.append(text)
        size += len(text)

    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            para.append(line)
            if not line.strip():
                yield from flush_paragraph()
    yield from flush_paragraph()
    if "".join(doc).strip():
        yield Document("".join(doc).strip(), f"{path}#{part}" if part else str(path))


def jsonl_records(path: Path, who: str) -> Iterator[tuple[int, object]]:
    """(line number, record) of every non-blank line of a ``.jsonl`` or ``.jsonl.gz`` file,
    streamed; a line that is not JSON raises a ValueError naming ``who``, the file and the line."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace") as f:  # -sig: a leading BOM is not JSON
        for k, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield k, json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{who}: {path}:{k} is not valid JSON ({e.msg})") from None


def _jsonl(path: Path, field: str) -> Iterator[Document]:
    for k, rec in jsonl_records(path, "read_documents"):
        if not isinstance(rec, dict) or not isinstance(rec.get(field), str):
            raise ValueError(f"read_documents: {path}:{k} has no string field {field!r}; pass text_field=...")
        yield Document(rec[field], f"{path}:{k}")


def _parquet(path: Path, field: str, batch_rows: int) -> Iterator[Document]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("read_documents: reading Parquet needs pyarrow (pip install 'yilightning[parquet]')") from None
    pf = pq.ParquetFile(path)
    if field not in pf.schema_arrow.names:
        raise ValueError(f"read_documents: {path} has no column {field!r} (columns: {', '.join(pf.schema_arrow.names)})")
    kind, t = pf.schema_arrow.field(field).type, pa.types
    values = kind.value_type if t.is_dictionary(kind) else kind  # (a pandas category column)
    binary = t.is_binary(values) or t.is_large_binary(values) or t.is_binary_view(values)
    if not (binary or t.is_string(values) or t.is_large_string(values) or t.is_string_view(values)):
        raise ValueError(f"read_documents: {path}: column {field!r} holds {kind}, not text; pass text_field=...")
    row = 0
    for batch in pf.iter_batches(batch_size=batch_rows, columns=[field]):
        for text in batch.column(0).to_pylist():
            if text is not None:  # bytes as UTF-8, bad bytes replaced, as the text readers do
                yield Document(text.decode("utf-8", errors="replace") if binary else text, f"{path}:{row}")
            row += 1


def read_documents(paths: str | Path | Iterable[str | Path], *, text_field: str = "text",
                   max_chars: int = 1_000_000, batch_rows: int = 1024) -> Iterator[Document]:
    """Streams :class:`Document` s from files and folders (searched recursively): ``.txt``,
    ``.md``, ``.rst`` (a document per file, cut at paragraph breaks past ``max_chars``),
    ``.jsonl`` / ``.jsonl.gz`` (the ``text_field`` of each record) and ``.parquet`` (the
    ``text_field`` column, read ``batch_rows`` at a time; needs pyarrow)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    for path in _files(paths):
        kind = _kind(path)
        try:
            if kind == "jsonl":
                yield from _jsonl(path, text_field)
            elif kind == "parquet":
                yield from _parquet(path, text_field, batch_rows)
            else:
                yield from _text_file(path, max_chars)
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:  # a truncated or corrupt .gz
            raise ValueError(f"read_documents: {path} is not a complete gzip file ({e})") from None
        except Exception as e:
            if type(e).__module__.startswith("pyarrow"):  # ArrowInvalid and friends: a corrupt .parquet
                raise ValueError(f"read_documents: {path} is not a readable Parquet file ({e})") from None
            raise
