"""Registers the `fuzz` marker: `pytest -m "not fuzz"` skips the bounded fuzz pass."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Declare the marker so that `--strict-markers` accepts it."""
    config.addinivalue_line("markers", "fuzz: the bounded CI fuzz pass (about 60 s of CPU)")
