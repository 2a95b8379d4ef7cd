"""Fixtures of the staking unit tests (shared ones come from unit.expectations)."""

from unit.expectations import books, module_fixtures_up_front  # noqa: F401  (re-exported fixtures)
