"""The soak's test marker (anvil comes from tests/conftest.py's `anvil_binary`)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "soak: the fault soak on anvil (minutes of a saturated machine); `make test-soak` runs it, "
        "`make test` leaves it out",
    )
