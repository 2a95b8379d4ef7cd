"""providers(): the whole record, as real flows (register, hardware report, jobs) leave it."""

from __future__ import annotations

import pytest

from helpers.constants import CPU_DEV, DAY, HOUR, PRICE


def test_unknown_account_has_an_empty_record(market, attacker):
    record = market.providers(attacker)
    assert tuple(record) == (0, 0, 0, 0, "", 0, 0, 0, False)


@pytest.mark.parametrize(
    "valid_for, hardware_validity",
    [(HOUR, DAY), (DAY, DAY), (7 * DAY, 7 * DAY)],
    ids=["1h", "1d", "7d-with-7d-validity"],
)
def test_verified_until_is_the_report_validity(
    market, owner, provider, register, verify, block_time, valid_for: int, hardware_validity: int
):
    # docs/PROTOCOL.md: a report verifies until its valid_until, which may lie at most
    # HARDWARE_VALIDITY ahead (a report further ahead is refused: test_submit_hardware_report).
    if hardware_validity != market.hardware_validity():
        market.set_hardware_validity(hardware_validity, sender=owner)
    register(provider)
    tx = verify(provider, valid_for=valid_for)
    now = block_time(tx)
    assert market.providers(provider).verified_until == now + valid_for


def test_record_after_register_verify_and_a_failed_job(market, client, provider, ready_provider, fail_jobs, block_time):
    ready_provider(provider)
    verified_until = market.providers(provider).verified_until
    [failed] = fail_jobs(provider, 1)
    assert tuple(market.providers(provider)) == (
        CPU_DEV,
        1,
        0,  # claim_version: as registered
        PRICE,
        "http://127.0.0.1:8700",
        verified_until,
        1,  # recent_failures
        block_time(failed),  # failure_window_start: the window opened at the failure
        False,
    )
    assert verified_until > 0
