"""Shared by tests/ and bench/."""

import os
from pathlib import Path

# The safety engine trains its classifier once and caches it; keep the copy used by tests and
# benchmarks in the (git-ignored) build folder, so every run after the first reuses it.
os.environ.setdefault("YL_CACHE_DIR", str(Path(__file__).resolve().parent / "build" / "cache"))
