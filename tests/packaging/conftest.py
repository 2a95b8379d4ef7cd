"""The packaging test's marker: `make test-packaging` runs it, `make test` leaves it out."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "packaging: installs the core package alone into a fresh venv (a minute or two); "
        "`make test-packaging` runs it, `make test` leaves it out",
    )
