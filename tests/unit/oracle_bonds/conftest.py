"""Fixtures of the oracle bond tests (shared ones come from unit.expectations and unit.companions)."""

from __future__ import annotations

from unit.companions import bonded, bonds, companions, market, settler, stake_books  # noqa: F401  (re-exported fixtures)
from unit.expectations import books  # noqa: F401  (re-exported fixtures)
