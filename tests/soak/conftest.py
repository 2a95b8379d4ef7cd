"""The soak's test marker (anvil comes from tests/conftest.py's `anvil_binary`)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "soak: the fault soak on anvil (minutes of a saturated machine); in `make test`, "
                   "`-m 'not soak'` leaves it out")
