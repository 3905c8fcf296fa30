import os
from pathlib import Path

import pytest
import torch

# The safety engine trains its classifier once and caches it; keep the tests' copy in the
# (git-ignored) build folder so every run after the first, and CI's second pass, reuses it.
os.environ.setdefault("YL_CACHE_DIR", str(Path(__file__).resolve().parent.parent / "build" / "cache"))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU here; bench/gpu_check.sh runs these on one")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request) -> torch.device:
    return torch.device(request.param)
