"""staking.stake: adds stake-token to the caller's free stake."""

from __future__ import annotations

import ape
import pytest

from helpers.constants import MIN_STAKE, TOKEN
from unit.expectations import emitted

# Free stake is packed into the low 128 bits of one storage word.
MAX_FREE_STAKE = 2**128 - 1


def test_zero_amount_reverts(market, provider, funded):
    with ape.reverts("staking: zero amount"):
        market.stake(0, sender=provider)


@pytest.mark.parametrize(
    "minted, approved",
    [(TOKEN, 0), (0, TOKEN)],
    ids=["allowance-missing", "balance-missing"],
)
def test_failed_token_pull_reverts(market, stake_token, keeper, minted: int, approved: int):
    # keeper is not in `funded`: it holds and approves only what this test gives it.
    stake_token.mint(keeper, minted, sender=keeper)
    stake_token.approve(market, approved, sender=keeper)
    with ape.reverts("token_io: transfer reverted"):
        market.stake(TOKEN, sender=keeper)


@pytest.mark.parametrize(
    "first, second",
    [(None, MAX_FREE_STAKE + 1), (MAX_FREE_STAKE, 1)],
    ids=["one-call-above-2**128-1", "top-up-past-2**128-1"],
)
def test_stake_too_large_reverts(market, stake_token, keeper, first: int | None, second: int):
    stake_token.mint(keeper, 2**129, sender=keeper)
    stake_token.approve(market, 2**256 - 1, sender=keeper)
    if first is not None:
        market.stake(first, sender=keeper)
    with ape.reverts("staking: stake too large"):
        market.stake(second, sender=keeper)


def test_stake_up_to_the_128_bit_limit_succeeds(market, stake_token, keeper):
    stake_token.mint(keeper, MAX_FREE_STAKE, sender=keeper)
    stake_token.approve(market, MAX_FREE_STAKE, sender=keeper)
    market.stake(MAX_FREE_STAKE, sender=keeper)
    assert market.stake_of(keeper).free == MAX_FREE_STAKE


def test_stake_pulls_tokens_credits_free_stake_and_logs(market, stake_token, provider, funded, books):
    wallet_before = stake_token.balanceOf(provider)
    market_before = stake_token.balanceOf(market)

    tx = market.stake(MIN_STAKE, sender=provider)

    assert emitted(tx, market.Staked) == [{"provider": provider, "amount": MIN_STAKE}]
    assert stake_token.balanceOf(provider) == wallet_before - MIN_STAKE
    assert stake_token.balanceOf(market) == market_before + MIN_STAKE
    stake = market.stake_of(provider)
    assert (stake.free, stake.locked, stake.unbonding, stake.release_at) == (MIN_STAKE, 0, 0, 0)
    books()


def test_stake_adds_to_free_and_leaves_locked_alone(market, provider, client, running_job, books):
    running_job(client, provider)
    before = market.stake_of(provider)
    assert before.locked > 0

    market.stake(3 * TOKEN, sender=provider)

    after = market.stake_of(provider)
    assert after.free == before.free + 3 * TOKEN
    assert after.locked == before.locked
    books()


def test_locked_stake_counts_toward_the_128_bit_limit(market, stake_token, provider, client, running_job):
    # free + locked share one packed word; the cap applies to their sum, so no later
    # lock or top-up can push either half past 128 bits.
    running_job(client, provider)
    stake = market.stake_of(provider)
    room = MAX_FREE_STAKE - stake.free - stake.locked
    stake_token.mint(provider, room + 1, sender=provider)

    with ape.reverts("staking: stake too large"):
        market.stake(room + 1, sender=provider)
    market.stake(room, sender=provider)
    after = market.stake_of(provider)
    assert after.free + after.locked == MAX_FREE_STAKE
