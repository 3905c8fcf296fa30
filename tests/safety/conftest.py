import pytest

from yilightning.safety import RAISE


@pytest.fixture(scope="session")
def engine() -> RAISE:
    """The default engine (its classifier is trained on first use and cached)."""
    return RAISE()
