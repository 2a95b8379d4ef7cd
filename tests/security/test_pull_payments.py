"""Pull payments: a recipient that cannot receive blocks nobody (docs/PROTOCOL.md, Job lifecycle).

The market runs on BlacklistToken, whose transfers to a blacklisted address revert: the
stand-in for every recipient that cannot (or will not) receive. Settling only credits
balances, so it goes through whoever is blacklisted; the blocked account's own claim
fails, its credit stays, and everyone else is paid and keeps trading.
"""

from __future__ import annotations

import ape
import pytest

from gpumarket.signing.eip712 import Outcome
from helpers.constants import COMPLETED, FAILED


@pytest.fixture(scope="module")
def blacklist_kit(hostile_kit):
    return hostile_kit("BlacklistToken")


def blacklist(kit, account, is_blacklisted: bool = True) -> None:
    for token in kit.tokens:
        token.set_blacklisted(account, is_blacklisted, sender=account)


def claim_everything(kit, account) -> None:
    """Claims each token the account is owed and checks it received exactly that."""
    for token in kit.tokens:
        owed = kit.market.claimable(token, account)
        if owed:
            before = token.balanceOf(account)
            kit.market.claim(token, sender=account)
            assert token.balanceOf(account) - before == owed
            assert kit.market.claimable(token, account) == 0


@pytest.mark.parametrize("outcome,state", [(Outcome.COMPLETED, COMPLETED), (Outcome.FAILED, FAILED)])
def test_settling_pushes_no_tokens(outcome, state, blacklist_kit, provider, client, treasury):
    kit = blacklist_kit
    kit.ready_provider(provider)
    job_id = kit.running_job(client, provider)
    for account in (provider, client, treasury):
        blacklist(kit, account)
    kit.settle(job_id, outcome, gpu_seconds=600)
    assert kit.market.get_job(job_id).state == state
    assert kit.market.claimable(kit.payment_token, client) > 0
    kit.assert_conserved()


def test_a_client_that_cannot_receive_blocks_nobody(blacklist_kit, provider, client, client2, treasury):
    kit, market = blacklist_kit, blacklist_kit.market
    kit.ready_provider(provider)
    job_id = kit.running_job(client, provider)
    blacklist(kit, client)
    kit.settle(job_id, Outcome.FAILED)  # refund and slash share both owed to the client
    owed = {str(token): market.claimable(token, client) for token in kit.tokens}
    assert all(owed.values())

    for token in kit.tokens:
        with ape.reverts("token_io: transfer reverted"):
            market.claim(token, sender=client)
    assert {str(token): market.claimable(token, client) for token in kit.tokens} == owed

    claim_everything(kit, treasury)
    # The market keeps working for everyone else: a new job, settled and paid out.
    other_job = kit.running_job(client2, provider)
    kit.settle(other_job, Outcome.COMPLETED, gpu_seconds=600)
    for account in (provider, client2, treasury):
        claim_everything(kit, account)
    kit.assert_conserved()

    # The blocked credit waited for its owner.
    blacklist(kit, client, False)
    claim_everything(kit, client)
    kit.assert_conserved()


def test_a_provider_that_cannot_receive_blocks_no_other_withdrawal(blacklist_kit, provider, provider2, chain):
    kit, market = blacklist_kit, blacklist_kit.market
    for account in (provider, provider2):
        kit.ready_provider(account)
        market.request_unstake(market.stake_of(account).free, sender=account)
    blacklist(kit, provider)
    chain.mine(timestamp=max(market.stake_of(a).release_at for a in (provider, provider2)))

    unbonding = market.stake_of(provider).unbonding
    with ape.reverts("token_io: transfer reverted"):
        market.withdraw(sender=provider)
    assert market.stake_of(provider).unbonding == unbonding

    owed = market.stake_of(provider2).unbonding
    before = kit.stake_token.balanceOf(provider2)
    market.withdraw(sender=provider2)
    assert kit.stake_token.balanceOf(provider2) - before == owed
    kit.assert_conserved()
