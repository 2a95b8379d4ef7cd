"""Fixtures of the verification unit tests (shared ones come from unit.expectations)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gpumarket.signing.eip712 import HardwareReport

from helpers.committee import hardware_report
from helpers.constants import DAY
from unit.expectations import books  # noqa: F401  (re-exported fixtures)


@pytest.fixture
def signed_hardware_report(market, committee, domain, chain) -> Callable[..., tuple[HardwareReport, list[bytes]]]:
    """Builder: a HardwareReport with the committee's quorum signatures.

    Class and count default to the provider's current claim, the epoch to the current one,
    and valid_until to a day ahead, or just after the provider's last report if later,
    so that a default report is never stale.
    """

    def build(account, measured: int, valid_until: int | None = None, gpu_class: int | None = None, gpu_count: int | None = None, epoch: int | None = None):
        record = market.providers(account)
        if valid_until is None:
            valid_until = max(chain.pending_timestamp + DAY, market.last_report_valid_until(account) + 1)
        report = hardware_report(
            account,
            record.gpu_class if gpu_class is None else gpu_class,
            record.gpu_count if gpu_count is None else gpu_count,
            measured,
            valid_until,
            epoch=market.epoch() if epoch is None else epoch,
        )
        return report, committee.sign(domain, report)

    return build


@pytest.fixture
def submit_hardware(market, keeper, signed_hardware_report) -> Callable:
    """Builder: signs a HardwareReport (see signed_hardware_report) and submits it as a keeper."""

    def submit(account, measured: int, **fields):
        report, signatures = signed_hardware_report(account, measured, **fields)
        return market.submit_hardware_report(report, signatures, sender=keeper)

    return submit
