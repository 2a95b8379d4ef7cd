"""Fixtures of the governance unit tests (shared ones come from unit.expectations)."""

from __future__ import annotations

import pytest

from unit.expectations import books, module_fixtures_up_front  # noqa: F401  (re-exported fixtures)


@pytest.fixture
def successor(accounts):
    """An account governance hands something to: a new treasury or a new owner.

    Function-scoped on purpose: a session fixture first requested mid-module trips
    the same snapshot bug module_fixtures_up_front works around.
    """
    return accounts[8]
