"""The README's Python examples run as written: every ```python block, in order, in one fresh
interpreter (later blocks use names the earlier ones import), from a scratch directory holding a
copy of the README (the tokenizer example trains on it)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    """The bodies of the ```python fenced blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def test_readme_examples_run(tmp_path):
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 6, "the README's Python examples were not found"
    shutil.copy(README, tmp_path / "README.md")
    script = tmp_path / "readme_examples.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, f"a README example failed:\n{proc.stderr[-4000:]}"
    assert (tmp_path / "runs" / "tiny" / "model.safetensors").is_file()  # the save_pretrained example
