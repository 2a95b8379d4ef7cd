"""Jobs a provider pays itself cannot wash its failures away (issue 9, attack 3).

The attack: JAIL_AFTER_FAILURES (3) failures in a row jailed a provider, and any completed
job reset the count. So a provider that fails real clients' jobs keeps out of jail by
completing, after every two failures, a tiny job it posts itself, as its own client or from
a sybil account it funds. The job costs it the protocol fee on one GPU-second; the count
goes back to zero and the provider goes on failing clients forever.

Failures now count within a FAILURE_WINDOW (7 days) and completed jobs leave the count
alone: the third failure in the window jails, whatever completed in between. Every job
here is settled by a report signed by a quorum of the committee.
"""

from __future__ import annotations

import ape
import pytest

from gpumarket.signing.eip712 import Outcome
from helpers.constants import PRICE

TINY = {"max_price": PRICE, "max_duration": 1}  # one GPU-second at the provider's own price


@pytest.fixture
def washer(root_kit, market, provider):
    """The washing provider: verified for one GPU and staked."""
    root_kit.ready_provider(provider)
    assert market.jail_after_failures() == 3
    return provider


@pytest.fixture(params=["itself", "sybil"])
def self_dealer(request, root_kit, market, washer, attacker, payment_token):
    """Who posts the washing jobs: the provider itself, or a sybil account that the provider
    funds (the `attacker` account, given the provider's own payment tokens)."""
    if request.param == "itself":
        return washer
    # The sybil holds only what the provider sends it.
    payment_token.transfer(washer, payment_token.balanceOf(attacker), sender=attacker)
    payment_token.transfer(attacker, 1_000 * PRICE, sender=washer)
    return attacker


def fail_a_clients_job(kit, client, provider) -> object:
    return kit.settle(kit.running_job(client, provider), Outcome.FAILED)


def wash(kit, dealer, provider) -> None:
    """A tiny job posted by `dealer`, directed to the provider and completed."""
    job_id = kit.create_job(dealer, provider=provider, **TINY)
    kit.market.accept_job(job_id, sender=provider)
    kit.settle(job_id, Outcome.COMPLETED, gpu_seconds=1)


def test_washing_after_every_two_failures_still_jails_at_the_third(
    root_kit, market, washer, self_dealer, client, client2
):
    kit = root_kit
    # Round one: two failures, then a wash.
    fail_a_clients_job(kit, client, washer)
    fail_a_clients_job(kit, client2, washer)
    wash(kit, self_dealer, washer)
    assert not market.providers(washer).jailed

    # Round two: the first failure after the wash is the third in the window.
    tx = fail_a_clients_job(kit, client, washer)
    assert market.providers(washer).jailed, "the wash reset the failure count"
    [jailed] = tx.decode_logs(market.ProviderJailed)
    assert jailed.event_arguments == {"provider": washer.address, "recent_failures": 3}

    # Jailed: no more clients' jobs, and no more washing either.
    with ape.reverts("registry: provider jailed"):
        market.accept_job(kit.create_job(client2), sender=washer)
    with ape.reverts("registry: provider jailed"):
        market.accept_job(kit.create_job(self_dealer, provider=washer, **TINY), sender=washer)
    kit.assert_conserved()


def test_many_washes_between_failures_change_nothing(root_kit, market, washer, self_dealer, client):
    kit = root_kit
    for failure in range(1, 4):
        for _ in range(3):
            wash(kit, self_dealer, washer)
        fail_a_clients_job(kit, client, washer)
        assert market.providers(washer).recent_failures == failure
    assert market.providers(washer).jailed
