"""A report valid decades ahead cannot freeze a provider's verification (issue 9, attack 4).

Hardware reports of one claim must arrive in increasing valid_until order, so that an older
report cannot undo a newer one. Before issue 9 a report could be valid any time ahead (its
verification was only capped at HARDWARE_VALIDITY): one quorum-signed report with a
valid_until decades away, through an oracle's clock or configuration error, or a committee
talked into it, set an ordering key no later report could pass. Then:

- a spoofing provider holding such a passing report was beyond the reach of any later
  report: never again unverified, never spoof-slashed;
- an honest provider hit by such a failing report could never be verified again.

A report may now be valid at most HARDWARE_VALIDITY past the block it lands in; further
ahead it is refused, and fresh reports keep applying. Every report here is signed by a
quorum of the committee.
"""

from __future__ import annotations

from dataclasses import replace

import ape
import pytest

from helpers.constants import BPS, CPU_DEV, DAY, MIN_STAKE, TOKEN

YEAR = 365 * DAY
FAR_AHEAD = {"decades": 30 * YEAR, "uint64-max": None}  # None: valid_until = 2**64 - 1
STAKE = MIN_STAKE + 100 * TOKEN


def far_ahead_report(kit, account, horizon: str, measured: int | None = None):
    report = kit.hardware_report(account, measured=measured)
    valid_for = FAR_AHEAD[horizon]
    valid_until = 2**64 - 1 if valid_for is None else kit.chain.pending_timestamp + valid_for
    return replace(report, valid_until=valid_until)


@pytest.mark.parametrize("horizon", sorted(FAR_AHEAD))
def test_a_spoofer_cannot_shield_itself_with_a_far_ahead_passing_report(root_kit, market, chain, provider, horizon):
    kit = root_kit
    kit.register(provider)
    market.stake(STAKE, sender=provider)
    shield = far_ahead_report(kit, provider, horizon)
    with ape.reverts("verification: too far ahead"):
        kit.submit_hardware(shield)
    assert market.last_report_valid_until(provider, 0) == 0

    # An ordinary passing report verifies it, and a later spoof report still unverifies and slashes.
    kit.submit_hardware(kit.hardware_report(provider))
    assert market.is_verified(provider)
    chain.mine(timestamp=chain.pending_timestamp + 60)
    tx = kit.submit_hardware(kit.hardware_report(provider, measured=0))
    assert not market.is_verified(provider)
    [event] = tx.decode_logs(market.Slashed)
    assert event.event_arguments["amount"] == -(-STAKE * market.spoof_slash_bps() // BPS)
    kit.assert_conserved()


@pytest.mark.parametrize("horizon", sorted(FAR_AHEAD))
def test_a_far_ahead_failing_report_cannot_lock_an_honest_provider_out(root_kit, market, chain, provider, horizon):
    kit = root_kit
    kit.ready_provider(provider)
    chain.mine(timestamp=chain.pending_timestamp + 60)
    poison = far_ahead_report(kit, provider, horizon, measured=0)
    with ape.reverts("verification: too far ahead"):
        kit.submit_hardware(poison)
    assert market.is_verified(provider)

    # Fresh reports keep applying, day after day: unverify, then verify again.
    for day in range(1, 3):
        chain.mine(timestamp=chain.pending_timestamp + DAY // 2)
        kit.submit_hardware(kit.hardware_report(provider, measured=market.class_floor(CPU_DEV) - 1))
        assert not market.is_verified(provider)
        chain.mine(timestamp=chain.pending_timestamp + 60)
        kit.submit_hardware(kit.hardware_report(provider))
        assert market.is_verified(provider), f"day {day}"
