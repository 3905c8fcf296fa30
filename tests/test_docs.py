"""The documentation's examples run as written: the README's Python blocks and the package's
docstring examples (doctests)."""

import doctest
import importlib
import importlib.util
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import yilightning

README = Path(__file__).resolve().parents[1] / "README.md"
# the package's modules with docstring examples
SOURCES = {m.name: Path(importlib.util.find_spec(m.name).origin)
           for m in pkgutil.walk_packages(yilightning.__path__, "yilightning.")}
MODULES = sorted(name for name, path in SOURCES.items()
                 if path.suffix == ".py" and ">>> " in path.read_text(encoding="utf-8"))


def python_blocks(text: str) -> list[str]:
    """The bodies of the ```python fenced blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def test_readme_examples_run(tmp_path):
    """Every ```python block, in order, in one fresh interpreter (later blocks use names the
    earlier ones import), from a scratch directory holding a copy of the README (the tokenizer
    example trains on it)."""
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 6, "the README's Python examples were not found"
    shutil.copy(README, tmp_path / "README.md")
    script = tmp_path / "readme_examples.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, f"a README example failed:\n{proc.stderr[-4000:]}"
    assert (tmp_path / "runs" / "tiny" / "model.safetensors").is_file()  # the save_pretrained example


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, report=False)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} failed " \
                               f"(see `python -m pytest --doctest-modules {name.replace('.', '/')}.py`)"
