"""providers(): the whole record, as real flows (register, hardware report, jobs) leave it."""

from __future__ import annotations

import pytest

from gpumarket.signing.eip712 import Outcome

from helpers.constants import CPU_DEV, DAY, HOUR, PRICE


def test_unknown_account_has_an_empty_record(market, attacker):
    record = market.providers(attacker)
    assert tuple(record) == (0, 0, 0, "", 0, 0, False)


@pytest.mark.parametrize("valid_for", [HOUR, DAY, 7 * DAY], ids=["1h", "1d", "7d"])
def test_verified_until_is_the_report_validity_capped_by_hardware_validity(
    market, provider, register, verify, block_time, valid_for: int
):
    register(provider)
    tx = verify(provider, valid_for=valid_for)
    now = block_time(tx)
    # PROTOCOL.md: a report verifies until its valid_until, at most HARDWARE_VALIDITY ahead.
    assert market.providers(provider).verified_until == min(now + valid_for, now + market.hardware_validity())


def test_record_after_register_verify_and_a_failed_job(market, client, provider, ready_provider, fail_jobs):
    ready_provider(provider)
    verified_until = market.providers(provider).verified_until
    fail_jobs(provider, 1)
    assert tuple(market.providers(provider)) == (
        CPU_DEV,
        1,
        PRICE,
        "http://127.0.0.1:8700",
        verified_until,
        1,
        False,
    )
    assert verified_until > 0
