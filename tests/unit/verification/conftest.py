"""Fixtures of the verification unit tests (shared ones come from unit.expectations)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gpumarket.signing.eip712 import HardwareReport
from helpers.committee import hardware_report
from unit.expectations import books  # noqa: F401  (re-exported fixtures)


@pytest.fixture
def signed_hardware_report(market, committee, domain, chain) -> Callable[..., tuple[HardwareReport, list[bytes]]]:
    """Builder: a HardwareReport with the committee's quorum signatures.

    Class, count and claim version default to the provider's current claim, the epoch to
    the current one. valid_until defaults to HARDWARE_VALIDITY ahead (a day by default), the
    furthest ahead a report may be valid; if that is not after the last report of the same claim
    version, the next transaction is pinned just late enough that it is, so that a default
    report is never stale nor too far ahead.
    """

    def build(
        account,
        measured: int,
        valid_until: int | None = None,
        gpu_class: int | None = None,
        gpu_count: int | None = None,
        epoch: int | None = None,
        claim_version: int | None = None,
    ):
        record = market.providers(account)
        claim_version = record.claim_version if claim_version is None else claim_version
        if valid_until is None:
            validity = market.hardware_validity()
            at = max(chain.pending_timestamp, market.last_report_valid_until(account, claim_version) + 1 - validity)
            chain.pending_timestamp = at
            valid_until = at + validity
        report = hardware_report(
            account,
            record.gpu_class if gpu_class is None else gpu_class,
            record.gpu_count if gpu_count is None else gpu_count,
            measured,
            valid_until,
            epoch=market.epoch() if epoch is None else epoch,
            claim_version=claim_version,
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
