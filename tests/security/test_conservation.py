"""Conservation: token balance == free + locked + unbonding stake + escrow + claimable + treasury.

One story walks every path that moves money (stake, all five job endings, a job slash, a
spoof slash reaching unbonding stake, unstake, withdraw, claims) and checks the invariant
after each step: once with separate stake and payment tokens, and once with one token for
both (docs/PROTOCOL.md allows it, and then one balance backs both books).
"""

from __future__ import annotations

import pytest

from gpumarket.signing.eip712 import Outcome
from helpers.constants import DAY, HOUR


@pytest.fixture(params=["two-tokens", "one-token"])
def kit(request, root_kit, make_kit, deploy_token):
    if request.param == "two-tokens":
        return root_kit
    token = deploy_token("MockToken", "ONE")
    return make_kit(token, token)


def test_every_step_keeps_the_books_balanced(kit, chain, owner, provider, provider2, client, client2):
    market = kit.market
    check = kit.assert_conserved

    for account in (provider, provider2):
        kit.ready_provider(account, gpu_count=2)  # provider runs two jobs at once below
        check()

    completed = kit.running_job(client, provider)
    failed = kit.running_job(client2, provider)
    expired_running = kit.running_job(client, provider2)
    cancelled = kit.create_job(client)
    expired_open = kit.create_job(client2)
    check()

    kit.settle(completed, Outcome.COMPLETED, gpu_seconds=1_800)
    check()
    kit.settle(failed, Outcome.FAILED)
    check()
    market.cancel_job(cancelled, sender=client)
    check()

    chain.mine(timestamp=chain.pending_timestamp + HOUR + market.settle_grace() + 1)
    for job_id in (expired_open, expired_running):
        market.expire_job(job_id, sender=kit.keeper)
        check()

    # Unbonding stake, then a spoof slash that takes free stake and reaches into unbonding.
    market.set_spoof_slash_bps(5_000, sender=owner)
    for account in (provider, provider2):
        market.request_unstake(market.stake_of(account).free * 9 // 10, sender=account)
        check()
    # Hours after provider2's passing report, so valid_until moves forward at a day ahead (the most).
    kit.submit_hardware(kit.hardware_report(provider2, measured=0, valid_for=DAY))
    check()

    chain.mine(timestamp=max(market.stake_of(a).release_at for a in (provider, provider2)))
    for account in (provider, provider2):
        market.withdraw(sender=account)
        check()

    for account in kit.accounts:
        for token in {str(t): t for t in kit.tokens}.values():
            if market.claimable(token, account):
                market.claim(token, sender=account)
                check()

    # All that is left in the market is the providers' free stake.
    free = sum(market.stake_of(account).free for account in (provider, provider2))
    assert sum(token.balanceOf(market) for token in {str(t): t for t in kit.tokens}.values()) == free
