"""Moving to a new deployment, as docs/protocol-developer.md describes it: pause the old market,
let every job end and every balance be claimed (settling, cancelling, expiring, claiming,
unstaking and withdrawing all work while paused), and start again on a new market. Nothing is
left behind: the old market ends holding no tokens."""

from __future__ import annotations

import pytest

from gpumarket.chain.connection import advance_time
from gpumarket.chain.errors import ContractRevert
from gpumarket.chain.market_deploy import deploy_market_web3
from gpumarket.signing.eip712 import Outcome

from .conftest import CPU_DEV, HOUR, PRICE, SPEC_HASH, Kit


def _drained(kit: Kit) -> dict[str, int]:
    market = kit.market()
    return {token.symbol(): token.balance_of(market.address) for token in (market.stake_token, market.payment_token)}


def test_a_paused_market_lets_everyone_leave_with_everything_and_a_new_one_takes_over(kit: Kit):
    roles = kit.roles
    provider = kit.ready_provider(roles.provider)
    kit.fund(roles.client, roles.client2)
    running = kit.create_job(roles.client, roles.provider.address)
    provider.accept_job(running)
    open_job = kit.create_job(roles.client2, roles.provider.address)
    expiring = kit.create_job(roles.client2, roles.provider.address)

    owner = kit.market(roles.deployer)
    owner.pause()
    client = kit.market(roles.client)
    # Nothing new starts ...
    with pytest.raises(ContractRevert, match="pausable: contract is paused"):
        client.create_job(CPU_DEV, 1, 2 * PRICE, HOUR, SPEC_HASH, kit.now() + HOUR, provider=roles.provider.address)
    with pytest.raises(ContractRevert, match="pausable: contract is paused"):
        provider.accept_job(open_job)
    # ... and everything running or open ends: a settlement, a cancellation, an expiry.
    report = kit.job_report(running, Outcome.COMPLETED, gpu_seconds=600)
    kit.market(roles.keeper).settle(report, kit.committee.sign(owner.domain, report))
    kit.market(roles.client2).cancel_job(open_job)
    advance_time(kit.w3, HOUR + 1)
    kit.market(roles.keeper).expire_job(expiring)

    # Every balance leaves: the clients' refunds, the provider's payment and stake, the fees.
    for key in (roles.client, roles.client2, roles.provider, roles.deployer):
        market = kit.market(key)
        for token in (market.stake_token, market.payment_token):
            if market.claimable(token, key.address):
                market.claim(token)
    stake = provider.stake_of(roles.provider.address)
    assert stake.locked == 0
    provider.request_unstake(stake.free)
    advance_time(kit.w3, owner.parameters()["unbonding_period"])
    provider.withdraw()
    assert set(_drained(kit).values()) == {0}
    assert owner.paused()

    # The services move to a new deployment: the same provider serves the same client there.
    new_record = deploy_market_web3(kit.w3, roles.deployer, kit.params, artifacts=kit.artifacts)
    moved = Kit(kit.w3, new_record, kit.artifacts, roles, kit.committee, kit.params)
    moved_provider = moved.ready_provider(roles.provider)
    moved.fund(roles.client)  # a local chain deploys fresh mock tokens with each market
    job = moved.create_job(roles.client, roles.provider.address)
    moved_provider.accept_job(job)
    assert moved.market().get_job(job).provider == roles.provider.address
    assert new_record.market != kit.deployment.market and not moved.market().paused()
