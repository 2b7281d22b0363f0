"""pytest set-up for the correctness suite; the helpers live in reference.py."""
import pytest

import fastact


def pytest_configure(config):
    if not fastact.backend().name == "cpp":
        raise pytest.UsageError(f"the tests need the compiled extension: {fastact.backend()}")
