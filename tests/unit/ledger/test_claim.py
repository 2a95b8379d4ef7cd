"""claim: pays the caller's whole balance in one token, zeroes it, logs Claimed.

Balances come from real flows: a cancelled job's refund (payment token) and a failed
job's slash shares (stake token).
"""

from __future__ import annotations

import ape
import pytest

from gpumarket.signing.eip712 import Outcome
from unit.expectations import ZERO_ADDRESS, ceil_bps, emitted


def test_pays_and_zeroes_the_balance(market, client, payment_token, refund_to_claim, books):
    refund = refund_to_claim(client)
    assert market.claimable(payment_token, client) == refund
    client_before = payment_token.balanceOf(client)
    market_before = payment_token.balanceOf(market)

    tx = market.claim(payment_token, sender=client)

    assert tx.return_value == refund
    assert market.claimable(payment_token, client) == 0
    assert payment_token.balanceOf(client) == client_before + refund
    assert payment_token.balanceOf(market) == market_before - refund
    books()


def test_logs_claimed_and_the_token_transfer(market, client, payment_token, refund_to_claim):
    refund = refund_to_claim(client)
    tx = market.claim(payment_token, sender=client)
    assert emitted(tx, market.Claimed) == [
        {"account": client.address, "token": payment_token.address, "amount": refund}
    ]
    assert emitted(tx, payment_token.Transfer) == [
        {"sender": market.address, "receiver": client.address, "value": refund}
    ]


def test_second_claim_reverts(market, client, payment_token, refund_to_claim):
    refund_to_claim(client)
    market.claim(payment_token, sender=client)
    with ape.reverts("ledger: nothing to claim"):
        market.claim(payment_token, sender=client)


def test_claims_everything_credited_since_the_last_claim(market, client, payment_token, refund_to_claim):
    first, second = refund_to_claim(client), refund_to_claim(client)
    tx = market.claim(payment_token, sender=client)
    assert tx.return_value == first + second


@pytest.mark.parametrize("role", ["stake", "payment"])
def test_nothing_credited_reverts(market, client, stake_token, payment_token, role: str):
    token = stake_token if role == "stake" else payment_token
    with ape.reverts("ledger: nothing to claim"):
        market.claim(token, sender=client)


@pytest.mark.parametrize(
    "token_address", [ZERO_ADDRESS, "0x000000000000000000000000000000000000dEaD"], ids=["zero", "eoa"]
)
def test_unknown_token_reverts(market, client, refund_to_claim, token_address: str):
    refund_to_claim(client)  # the caller has a balance, only not in this token
    with ape.reverts("ledger: nothing to claim"):
        market.claim(token_address, sender=client)


def test_balance_belongs_to_its_account_only(market, client, attacker, payment_token, refund_to_claim):
    refund = refund_to_claim(client)
    with ape.reverts("ledger: nothing to claim"):
        market.claim(payment_token, sender=attacker)
    assert market.claimable(payment_token, client) == refund


def test_each_account_pulls_its_own_slash_share_in_stake_token(
    market, client, provider, treasury, running_job, settle, stake_token, books
):
    job_id = running_job(client, provider)
    collateral = market.get_job(job_id).collateral
    settle(job_id, Outcome.FAILED)
    slashed = ceil_bps(collateral, market.slash_bps())
    client_share = ceil_bps(slashed, market.client_share_bps())
    expected = {client: client_share, treasury: slashed - client_share}

    for account, share in expected.items():
        before = stake_token.balanceOf(account)
        tx = market.claim(stake_token, sender=account)
        assert emitted(tx, market.Claimed) == [
            {"account": account.address, "token": stake_token.address, "amount": share}
        ]
        assert stake_token.balanceOf(account) == before + share
        assert market.claimable(stake_token, account) == 0
    books()


def test_claim_works_while_paused(market, owner, client, payment_token, refund_to_claim):
    refund = refund_to_claim(client)
    market.pause(sender=owner)
    assert market.claim(payment_token, sender=client).return_value == refund


def test_credits_after_a_claim_are_claimable_exactly(market, client, payment_token, refund_to_claim, books):
    # claim leaves the storage slot non-zero (a gas saving for the next credit); the
    # balance it reports and pays must still be exactly what was credited since.
    refund_to_claim(client)
    market.claim(payment_token, sender=client)
    later = refund_to_claim(client)

    assert market.claimable(payment_token, client) == later
    tx = market.claim(payment_token, sender=client)
    assert tx.return_value == later
    assert market.claimable(payment_token, client) == 0
    books()
