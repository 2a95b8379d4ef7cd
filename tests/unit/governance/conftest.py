"""Fixtures of the governance unit tests (shared ones come from unit.expectations)."""

from __future__ import annotations

import pytest

from unit.expectations import books  # noqa: F401  (re-exported fixtures)


@pytest.fixture
def successor(accounts):
    """An account governance hands something to: a new treasury or a new owner."""
    return accounts[8]
