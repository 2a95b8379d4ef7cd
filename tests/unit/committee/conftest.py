"""Fixtures of the committee unit tests (shared ones come from unit.expectations)."""

from __future__ import annotations

import pytest

from helpers.committee import Committee, hardware_report
from helpers.constants import DAY
from unit.expectations import books  # noqa: F401  (re-exported fixtures)


@pytest.fixture
def next_committee() -> Committee:
    """A 3-of-4 committee whose keys share none with the `committee` fixture's."""
    return Committee.of_size(4, threshold=3, first_index=100)


@pytest.fixture
def signed_hardware_report(market, domain, chain, register, provider):
    """Builder: a passing hardware report for `provider` at `epoch`, signed by the first
    `signers` keys of `signer_committee` (default: its threshold)."""
    register(provider)

    def build(signer_committee: Committee, epoch: int, signers: int | None = None):
        record = market.providers(provider)
        report = hardware_report(
            provider,
            record.gpu_class,
            record.gpu_count,
            market.class_floor(record.gpu_class) * record.gpu_count,
            chain.pending_timestamp + DAY,
            epoch=epoch,
        )
        return report, signer_committee.sign(domain, report, signers=signers)

    return build
