"""Non-standard ERC20s (docs/PROTOCOL.md, Contracts: tokens).

USDT-like tokens (no return value) MUST work; fee-on-transfer tokens MUST be refused;
a token that returns false instead of reverting must never be taken at its word.
Each market here runs on two instances of one mock (contracts/mocks/).
"""

from __future__ import annotations

import ape
import pytest

from gpumarket.signing.eip712 import Outcome
from helpers.constants import MIN_STAKE, PRICE, TOKEN

STAKE = MIN_STAKE + 100 * TOKEN


@pytest.fixture(scope="module")
def usdt_kit(hostile_kit):
    return hostile_kit("UsdtLikeToken")


@pytest.fixture(scope="module")
def fee_kit(hostile_kit):
    return hostile_kit("FeeOnTransferToken")


@pytest.fixture(scope="module")
def false_kit(hostile_kit):
    return hostile_kit("FalseReturningToken")


def test_a_usdt_like_token_works_end_to_end(usdt_kit, provider, client, treasury, chain):
    kit, market = usdt_kit, usdt_kit.market
    stake_start = kit.stake_token.balanceOf(provider)

    kit.ready_provider(provider, stake=STAKE)
    assert kit.stake_token.balanceOf(market) == STAKE
    job_id = kit.running_job(client, provider)
    escrow = market.get_job(job_id).escrow
    assert kit.payment_token.balanceOf(market) == escrow
    kit.settle(job_id, Outcome.COMPLETED, gpu_seconds=1_800)
    kit.assert_conserved()

    for account in (provider, client, treasury):
        owed = market.claimable(kit.payment_token, account)
        assert owed > 0
        before = kit.payment_token.balanceOf(account)
        market.claim(kit.payment_token, sender=account)
        assert kit.payment_token.balanceOf(account) - before == owed
    assert kit.payment_token.balanceOf(market) == 0

    market.request_unstake(STAKE, sender=provider)
    chain.pending_timestamp = market.stake_of(provider).release_at
    market.withdraw(sender=provider)
    assert kit.stake_token.balanceOf(provider) == stake_start
    assert kit.stake_token.balanceOf(market) == 0
    kit.assert_conserved()


def test_the_fee_on_transfer_mock_takes_one_percent(fee_kit, client, client2):
    # The refusal tests below mean something only if the mock really keeps a fee.
    before = fee_kit.payment_token.balanceOf(client2)
    fee_kit.payment_token.transfer(client2, 10_000, sender=client)
    assert fee_kit.payment_token.balanceOf(client2) - before == 9_900


@pytest.mark.parametrize("entry", ["stake", "create_job"])
def test_a_fee_on_transfer_token_is_refused(entry, fee_kit, provider, client):
    with ape.reverts("token_io: fee-on-transfer token"):
        if entry == "stake":
            fee_kit.market.stake(STAKE, sender=provider)
        else:
            fee_kit.create_job(client)
    assert fee_kit.stake_token.balanceOf(fee_kit.market) == 0
    assert fee_kit.payment_token.balanceOf(fee_kit.market) == 0


@pytest.mark.parametrize("entry", ["stake", "create_job"])
@pytest.mark.parametrize("shortfall", ["balance", "allowance"])
def test_a_false_returning_pull_is_refused(entry, shortfall, false_kit, provider, keeper):
    # The funded provider lacks the balance for a huge amount; the keeper approved nothing.
    account = provider if shortfall == "balance" else keeper
    huge_price = 2**96 - 1
    with ape.reverts("token_io: token returned false"):
        if entry == "stake":
            false_kit.market.stake(2**127 if shortfall == "balance" else STAKE, sender=account)
        else:
            false_kit.create_job(account, max_price=huge_price if shortfall == "balance" else 2 * PRICE)
    assert false_kit.market.stake_of(account).free == 0
    assert false_kit.market.job_count() == 0


def test_a_false_returning_claim_keeps_the_credit(false_kit, client):
    market = false_kit.market
    job_id = false_kit.create_job(client)
    market.cancel_job(job_id, sender=client)
    owed = market.claimable(false_kit.payment_token, client)
    false_kit.payment_token.set_refuse_all(True, sender=client)
    with ape.reverts("token_io: token returned false"):
        market.claim(false_kit.payment_token, sender=client)
    assert market.claimable(false_kit.payment_token, client) == owed
    false_kit.payment_token.set_refuse_all(False, sender=client)
    market.claim(false_kit.payment_token, sender=client)
    assert market.claimable(false_kit.payment_token, client) == 0
    false_kit.assert_conserved()


def test_a_false_returning_withdraw_keeps_the_unbonding_stake(false_kit, provider, chain):
    market = false_kit.market
    market.stake(STAKE, sender=provider)
    market.request_unstake(STAKE, sender=provider)
    # Mining the block at the release time keeps the clock there for every later tx.
    chain.mine(timestamp=market.stake_of(provider).release_at)
    false_kit.stake_token.set_refuse_all(True, sender=provider)
    with ape.reverts("token_io: token returned false"):
        market.withdraw(sender=provider)
    assert market.stake_of(provider).unbonding == STAKE
    false_kit.stake_token.set_refuse_all(False, sender=provider)
    market.withdraw(sender=provider)
    assert market.stake_of(provider).unbonding == 0
    false_kit.assert_conserved()
