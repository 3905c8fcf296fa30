"""The embedded default corpus: text any machine can build without a download.

Two sources, both the project's own or generated here:
- ``stdlib``: docstrings of the installed Python standard library, read with ``ast`` (nothing
  is imported or executed);
- ``math``: synthetic arithmetic text with many digits (the report splits numbers into single
  digits; this exercises it), generated from a seed.
"""

from __future__ import annotations

import ast
import random
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


@dataclass(frozen=True)
class Document:
    text: str
    source: str  # "stdlib:<module path>" or "math:<index>"


def stdlib_documents(min_chars: int = 200, max_docs: int | None = None) -> Iterator[Document]:
    """Module, class and function docstrings of the standard library, longest prose first per file."""
    root = Path(sysconfig.get_paths()["stdlib"])
    count = 0
    for path in sorted(root.rglob("*.py")):
        if any(part in ("test", "tests", "idlelib", "site-packages", "lib2to3") for part in path.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= min_chars:
                    yield Document(doc, f"stdlib:{path.relative_to(root)}")
                    count += 1
                    if max_docs is not None and count >= max_docs:
                        return


def math_documents(n: int, seed: int = 0) -> Iterator[Document]:
    """``n`` short worked arithmetic texts (sums, products, differences, word problems)."""
    rng = random.Random(seed)
    items = ["apples", "books", "coins", "marbles", "tickets", "boxes"]
    for i in range(n):
        a, b = rng.randint(2, 9999), rng.randint(2, 999)
        kind = rng.randrange(4)
        if kind == 0:
            text = f"Question: what is {a} + {b}? Answer: {a} + {b} = {a + b}."
        elif kind == 1:
            text = f"Question: what is {a} * {b}? Answer: {a} * {b} = {a * b}."
        elif kind == 2:
            text = f"Question: what is {a} - {b}? Answer: {a} - {b} = {a - b}."
        else:
            item = rng.choice(items)
            text = (f"Sam has {a} {item} and buys {b} more, then gives away {min(b, a)}. "
                    f"Sam now has {a} + {b} - {min(b, a)} = {a + b - min(b, a)} {item}.")
        yield Document(text, f"math:{i}")


def embedded_corpus(max_stdlib_docs: int | None = 4000, math_docs: int = 4000, seed: int = 0) -> list[Document]:
    """The default pre-training corpus (a few MB): standard-library docstrings + synthetic math."""
    return list(stdlib_documents(max_docs=max_stdlib_docs)) + list(math_documents(math_docs, seed))
