"""Unbonding cannot dodge a slash (docs/PROTOCOL.md, Provider lifecycle).

A running job's collateral is locked and never unstakeable, so a provider that sees a
FAILED report coming and unstakes everything it can (even in the same block) is still
slashed in full; a hardware-spoof slash reaches stake that is unbonding; and unbonding
stake cannot leave before UNBONDING_PERIOD, not even one second early.
"""

from __future__ import annotations

import ape
import pytest

from gpumarket.signing.eip712 import Outcome
from helpers.accounting import assert_conserved
from helpers.committee import job_report
from helpers.constants import BPS, DAY


def ceil_bps(amount: int, bps: int) -> int:
    """The protocol's rounding for slashes and shares: up, never in the provider's favour."""
    return -(-amount * bps // BPS)


@pytest.fixture
def failing_job(market, client, provider, running_job, committee, domain) -> tuple[int, object, list[bytes]]:
    """A running job and its FAILED report, signed by a quorum, ready to submit."""
    job_id = running_job(client, provider)
    report = job_report(job_id, provider, Outcome.FAILED, epoch=market.epoch())
    return job_id, report, committee.sign(domain, report)


def assert_collateral_slashed(
    market, job, free_before_settle: int, unbonding: int, provider, client, treasury, stake_token, payment_token
) -> None:
    slashed = ceil_bps(job.collateral, market.slash_bps())
    client_share = ceil_bps(slashed, market.client_share_bps())
    assert slashed >= 1
    stake = market.stake_of(provider)
    assert stake.locked == 0
    assert stake.free == free_before_settle + job.collateral - slashed
    assert stake.unbonding == unbonding
    assert market.claimable(stake_token, client) == client_share
    assert market.claimable(stake_token, treasury) == slashed - client_share
    assert_conserved(market, [stake_token, payment_token], [provider], [client, provider, treasury])


def test_unstaking_all_free_stake_leaves_the_collateral_to_be_slashed(
    failing_job, market, provider, client, treasury, keeper, stake_token, payment_token
):
    job_id, report, signatures = failing_job
    job = market.get_job(job_id)
    free = market.stake_of(provider).free
    market.request_unstake(free, sender=provider)
    # The collateral itself cannot be unstaked.
    with ape.reverts("staking: insufficient free stake"):
        market.request_unstake(1, sender=provider)
    assert market.stake_of(provider).locked == job.collateral

    market.settle(report, signatures, sender=keeper)
    assert_collateral_slashed(market, job, 0, free, provider, client, treasury, stake_token, payment_token)


def test_unstaking_in_the_same_block_as_the_failed_report_does_not_help(
    failing_job, market, chain, provider, client, treasury, keeper, stake_token, payment_token
):
    # The provider front-runs the FAILED report: both land in one block, unstake first.
    job_id, report, signatures = failing_job
    job = market.get_job(job_id)
    free = market.stake_of(provider).free
    chain.provider.auto_mine = False
    try:
        unstake_tx = market.request_unstake(free, sender=provider)
        settle_tx = market.settle(report, signatures, sender=keeper)
        chain.mine()
    finally:
        chain.provider.auto_mine = True
    assert unstake_tx.block_number == settle_tx.block_number
    assert_collateral_slashed(market, job, 0, free, provider, client, treasury, stake_token, payment_token)


@pytest.mark.parametrize("unbonding_share_bps", [10_000, 9_000], ids=["all-unbonding", "mostly-unbonding"])
def test_a_hardware_spoof_slash_reaches_unbonding_stake(
    unbonding_share_bps, market, owner, provider, ready_provider, verify, chain, treasury, stake_token, payment_token
):
    ready_provider(provider)
    market.set_spoof_slash_bps(5_000, sender=owner)  # the maximum: more than the free stake left
    total = market.stake_of(provider).free
    unbonding = total * unbonding_share_bps // BPS
    market.request_unstake(unbonding, sender=provider)

    chain.pending_timestamp += 1  # valid_until after the passing report's, at most a day ahead
    tx = verify(provider, measured=0, valid_for=DAY)

    slashed = ceil_bps(total, market.spoof_slash_bps())
    from_free = min(slashed, total - unbonding)
    assert slashed > from_free  # the slash has to reach into unbonding stake
    [event] = tx.decode_logs(market.Slashed)
    assert event.event_arguments == {
        "provider": provider.address,
        "amount": slashed,
        "beneficiary": "0x0000000000000000000000000000000000000000",
        "beneficiary_share": 0,
    }
    stake = market.stake_of(provider)
    assert stake.free == total - unbonding - from_free
    assert stake.unbonding == unbonding - (slashed - from_free)
    assert market.claimable(stake_token, treasury) == slashed
    assert_conserved(market, [stake_token, payment_token], [provider], [provider, treasury])

    chain.pending_timestamp = stake.release_at
    paid = stake_token.balanceOf(provider)
    market.withdraw(sender=provider)
    assert stake_token.balanceOf(provider) - paid == unbonding - (slashed - from_free)


def test_withdraw_one_second_early_reverts_and_on_time_pays(market, provider, ready_provider, chain, stake_token):
    ready_provider(provider)
    amount = market.stake_of(provider).free
    tx = market.request_unstake(amount, sender=provider)
    release_at = market.stake_of(provider).release_at
    assert release_at == chain.blocks[tx.block_number].timestamp + market.unbonding_period()

    chain.pending_timestamp = release_at - 1
    with ape.reverts("staking: unbonding not released"):
        market.withdraw(sender=provider)

    chain.pending_timestamp = release_at
    balance = stake_token.balanceOf(provider)
    tx = market.withdraw(sender=provider)
    assert stake_token.balanceOf(provider) - balance == amount
    [event] = tx.decode_logs(market.Withdrawn)
    assert event.event_arguments == {"provider": provider.address, "amount": amount}
    assert market.stake_of(provider).unbonding == 0
