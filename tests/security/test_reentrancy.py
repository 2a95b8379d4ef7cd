"""Reentrancy is blocked (docs/PROTOCOL.md, Security properties).

The market runs on ReentrantToken (stake and payment token both), which calls back into
the market in the middle of the transfers that stake, create_job, claim and withdraw
make. Each callback (claim, withdraw, settle) would succeed on its own: the token itself
holds a claimable balance and released unbonding stake, and the settle carries a valid
quorum. Re-entered, each one fails on the contract-wide lock (`# pragma nonreentrancy on`),
which reverts without a reason; every other check in the market gives one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ape
import pytest

from gpumarket.signing.eip712 import Outcome
from helpers.constants import COMPLETED, HOUR, MIN_STAKE, PRICE, TOKEN

from .conftest import FUNDING, SPEC_HASH, ZERO_ADDRESS

MAX_UINT256 = 2**256 - 1
# What the token stakes as an account of its own.
TOKEN_ACCOUNT_STAKE = 10 * TOKEN

INNER_CALLS = ["claim", "withdraw", "settle"]
OUTER_CALLS = ["claim", "withdraw", "stake", "create_job"]


@dataclass
class Stage:
    """A market on ReentrantToken in which every inner and outer call below is due to succeed."""

    kit: Any
    token: Any
    job_id: int  # a running job whose COMPLETED report is signed
    report: Any
    signatures: list[bytes]
    provider: Any
    provider2: Any
    client: Any
    client2: Any

    def payload(self, inner: str) -> bytes:
        market = self.kit.market
        if inner == "claim":
            return market.claim.encode_input(self.token)
        if inner == "withdraw":
            return market.withdraw.encode_input()
        return market.settle.encode_input(self.report, self.signatures)

    def inner_done(self, inner: str) -> bool:
        """Whether the inner call's effect is on the books."""
        market = self.kit.market
        if inner == "claim":
            return market.claimable(self.token, self.token) == 0
        if inner == "withdraw":
            return market.stake_of(self.token).unbonding == 0
        return market.get_job(self.job_id).state == COMPLETED

    def call_outer(self, outer: str):
        market = self.kit.market
        if outer == "claim":
            return market.claim(self.token, sender=self.client2)
        if outer == "withdraw":
            return market.withdraw(sender=self.provider2)
        if outer == "stake":
            return market.stake(TOKEN, sender=self.provider)
        return self.kit.create_job(self.client)


@pytest.fixture(scope="module")
def stage(project, deploy_token, make_kit, chain, provider, provider2, client, client2) -> Stage:
    token = deploy_token("ReentrantToken", "RE")
    kit = make_kit(token, token)
    market = kit.market
    kit.providers.append(token)
    kit.accounts.append(token)

    kit.ready_provider(provider)
    job_id = kit.running_job(client, provider)
    report = kit.job_report(job_id, Outcome.COMPLETED, gpu_seconds=600)
    # provider2 has unbonding stake to withdraw, client2 a refund to claim.
    market.stake(MIN_STAKE, sender=provider2)
    market.request_unstake(MIN_STAKE, sender=provider2)
    market.cancel_job(kit.create_job(client2), sender=client2)

    # The token as an account of the market: stake it can withdraw, a refund it can claim.
    token.mint(token, FUNDING, sender=client)
    token.execute(token, token.approve.encode_input(market, MAX_UINT256), sender=client)
    token.execute(market, market.stake.encode_input(TOKEN_ACCOUNT_STAKE), sender=client)
    token.execute(market, market.request_unstake.encode_input(TOKEN_ACCOUNT_STAKE), sender=client)
    create = market.create_job.encode_input(
        1, 1, 2 * PRICE, HOUR, SPEC_HASH, ZERO_ADDRESS, chain.pending_timestamp + HOUR
    )
    token.execute(market, create, sender=client)
    token.execute(market, market.cancel_job.encode_input(market.job_count()), sender=client)
    assert market.claimable(token, token) > 0

    chain.mine(timestamp=max(market.stake_of(a).release_at for a in (provider2, token)))
    kit.assert_conserved()
    return Stage(
        kit, token, job_id, report, kit.committee.sign(kit.domain, report), provider, provider2, client, client2
    )


@pytest.mark.parametrize("inner", INNER_CALLS)
@pytest.mark.parametrize("outer", OUTER_CALLS)
def test_a_reentrant_call_reverts_the_outer_call(stage, outer, inner, attacker):
    stage.token.arm(stage.kit.market, stage.payload(inner), True, sender=attacker)
    with ape.reverts("token_io: transfer reverted"):
        stage.call_outer(outer)
    assert not stage.inner_done(inner)
    stage.kit.assert_conserved()


@pytest.mark.parametrize("inner", INNER_CALLS)
@pytest.mark.parametrize("outer", OUTER_CALLS)
def test_only_the_lock_stops_the_reentrant_call(stage, outer, inner, attacker):
    # The token swallows the failure, so the outer call completes and we see why the inner failed.
    stage.token.arm(stage.kit.market, stage.payload(inner), False, sender=attacker)
    stage.call_outer(outer)
    assert stage.token.reentry_attempted()
    assert not stage.token.reentry_succeeded()
    assert stage.token.reentry_returndata() == b""  # the lock's reasonless revert
    assert not stage.inner_done(inner)
    stage.kit.assert_conserved()

    # The same call, made by the same account outside any market call, succeeds.
    stage.token.execute(stage.kit.market, stage.payload(inner), sender=attacker)
    assert stage.inner_done(inner)
    stage.kit.assert_conserved()
