"""staking.request_unstake: moves free stake into the provider's single unbonding entry."""

from __future__ import annotations

import ape

from helpers.constants import DAY, HOUR, MIN_STAKE, TOKEN
from unit.expectations import emitted, next_tx_at


def test_zero_amount_reverts(market, provider, funded):
    market.stake(MIN_STAKE, sender=provider)
    with ape.reverts("staking: zero amount"):
        market.request_unstake(0, sender=provider)


def test_more_than_free_stake_reverts(market, provider, funded):
    market.stake(MIN_STAKE, sender=provider)
    with ape.reverts("staking: insufficient free stake"):
        market.request_unstake(MIN_STAKE + 1, sender=provider)


def test_nothing_staked_reverts(market, keeper):
    with ape.reverts("staking: insufficient free stake"):
        market.request_unstake(1, sender=keeper)


def test_locked_stake_cannot_be_unstaked(market, provider, client, running_job, books):
    running_job(client, provider)
    before = market.stake_of(provider)

    with ape.reverts("staking: insufficient free stake"):
        market.request_unstake(before.free + 1, sender=provider)
    # All of the free stake may go; the collateral stays locked with its job.
    market.request_unstake(before.free, sender=provider)

    after = market.stake_of(provider)
    assert (after.free, after.locked, after.unbonding) == (0, before.locked, before.free)
    books()


def test_request_moves_free_to_unbonding_and_logs(market, provider, chain, funded, books):
    market.stake(MIN_STAKE, sender=provider)
    release_at = next_tx_at(chain) + market.unbonding_period()

    tx = market.request_unstake(TOKEN, sender=provider)

    assert emitted(tx, market.UnstakeRequested) == [
        {"provider": provider, "amount": TOKEN, "unbonding_total": TOKEN, "release_at": release_at}
    ]
    stake = market.stake_of(provider)
    assert (stake.free, stake.locked, stake.unbonding, stake.release_at) == (MIN_STAKE - TOKEN, 0, TOKEN, release_at)
    books()


def test_adding_to_the_entry_restarts_its_clock(market, provider, chain, funded):
    market.stake(MIN_STAKE, sender=provider)
    first = market.request_unstake(TOKEN, sender=provider)
    second_release_at = next_tx_at(chain, first.timestamp + 2 * DAY) + market.unbonding_period()

    tx = market.request_unstake(2 * TOKEN, sender=provider)

    assert emitted(tx, market.UnstakeRequested) == [
        {"provider": provider, "amount": 2 * TOKEN, "unbonding_total": 3 * TOKEN, "release_at": second_release_at}
    ]
    entry = market.stake_of(provider)
    assert (entry.unbonding, entry.release_at) == (3 * TOKEN, second_release_at)


def test_release_uses_the_current_unbonding_period(market, owner, provider, funded):
    market.set_unbonding_period(HOUR, sender=owner)
    market.stake(MIN_STAKE, sender=provider)
    tx = market.request_unstake(TOKEN, sender=provider)

    assert market.stake_of(provider).release_at == tx.timestamp + HOUR
