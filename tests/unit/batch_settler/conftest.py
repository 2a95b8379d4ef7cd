"""Fixtures of the batch settlement tests (shared ones come from unit.expectations and unit.companions)."""

from __future__ import annotations

from unit.companions import bonds, companions, market, settle_batch, settler  # noqa: F401  (re-exported fixtures)
from unit.expectations import books  # noqa: F401  (re-exported fixtures)
