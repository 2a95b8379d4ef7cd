"""The `soak` marker for the benchmark's market run (anvil comes from tests/conftest.py's
`anvil_binary`); tests/soak/conftest.py registers it too, for runs of either directory alone."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "soak: minutes of a saturated machine (the fault soak, the market benchmark's run); `make test-soak` "
        "runs it, `make test` leaves it out",
    )
