"""Fixtures of the staking unit tests (shared ones come from unit.expectations)."""

from unit.expectations import books  # noqa: F401  (re-exported fixtures)
