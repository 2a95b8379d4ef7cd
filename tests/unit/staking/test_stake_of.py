"""staking.stake_of: a provider's free, locked and unbonding stake and its release time."""

from __future__ import annotations

from helpers.constants import TOKEN


def test_unknown_account_has_no_stake(market, keeper):
    stake = market.stake_of(keeper)
    assert (stake.free, stake.locked, stake.unbonding, stake.release_at) == (0, 0, 0, 0)


def test_reports_each_part_of_the_stake(market, provider, client, running_job):
    job_id = running_job(client, provider)  # MIN_STAKE + 100 tokens staked, collateral locked
    staked = market.stake_of(provider).free + market.stake_of(provider).locked
    collateral = market.get_job(job_id).collateral
    tx = market.request_unstake(7 * TOKEN, sender=provider)

    stake = market.stake_of(provider)
    assert stake.free == staked - collateral - 7 * TOKEN
    assert stake.locked == collateral
    assert stake.unbonding == 7 * TOKEN
    assert stake.release_at == tx.timestamp + market.unbonding_period()
