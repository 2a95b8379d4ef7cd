"""staking.withdraw: pays the unbonding entry once UNBONDING_PERIOD has passed."""

from __future__ import annotations

import ape
import pytest

from helpers.constants import DAY, MIN_STAKE, TOKEN
from unit.expectations import emitted, next_tx_at

UNSTAKED = 5 * TOKEN


@pytest.fixture
def release_at(market, provider, funded) -> int:
    """Stakes MIN_STAKE and starts unbonding UNSTAKED of it; returns when it is released."""
    market.stake(MIN_STAKE, sender=provider)
    market.request_unstake(UNSTAKED, sender=provider)
    return market.stake_of(provider).release_at


def test_nothing_unbonding_reverts(market, provider, funded):
    market.stake(MIN_STAKE, sender=provider)
    with ape.reverts("staking: nothing unbonding"):
        market.withdraw(sender=provider)


def test_second_withdraw_reverts(market, provider, chain, release_at: int):
    next_tx_at(chain, release_at)
    market.withdraw(sender=provider)
    with ape.reverts("staking: nothing unbonding"):
        market.withdraw(sender=provider)


def test_one_second_before_release_reverts(market, provider, chain, release_at: int):
    next_tx_at(chain, release_at - 1)
    with ape.reverts("staking: unbonding not released"):
        market.withdraw(sender=provider)


def test_withdraw_at_release_pays_clears_entry_and_logs(market, provider, chain, stake_token, release_at: int, books):
    wallet_before = stake_token.balanceOf(provider)
    market_before = stake_token.balanceOf(market)
    next_tx_at(chain, release_at)

    tx = market.withdraw(sender=provider)

    assert tx.return_value == UNSTAKED
    assert emitted(tx, market.Withdrawn) == [{"provider": provider, "amount": UNSTAKED}]
    assert stake_token.balanceOf(provider) == wallet_before + UNSTAKED
    assert stake_token.balanceOf(market) == market_before - UNSTAKED
    entry = market.stake_of(provider)
    assert (entry.unbonding, entry.release_at) == (0, 0)
    # Free stake is not touched by a withdrawal.
    assert market.stake_of(provider).free == MIN_STAKE - UNSTAKED
    books()


def test_topping_up_the_entry_delays_the_whole_withdrawal(market, provider, chain, release_at: int):
    next_tx_at(chain, release_at - DAY)
    market.request_unstake(TOKEN, sender=provider)

    next_tx_at(chain, release_at)
    with ape.reverts("staking: unbonding not released"):
        market.withdraw(sender=provider)
