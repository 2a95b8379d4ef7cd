"""unjail: governance releases a provider that JAIL_AFTER_FAILURES failed jobs within a
failure window jailed, and clears its failures. Providers are jailed for real here: jobs
accepted and settled FAILED by quorum-signed reports.

The window itself (successes do not reset it, it reopens after 7 days): test_failure_window.py."""

from __future__ import annotations

import ape
import pytest

from gpumarket.signing.eip712 import Outcome
from helpers.constants import RUNNING
from unit.expectations import emitted


@pytest.fixture
def jailed_provider(market, provider, fail_jobs):
    fail_jobs(provider, market.jail_after_failures())
    assert market.providers(provider).jailed
    return provider


def test_failures_below_the_threshold_do_not_jail(market, provider, fail_jobs):
    receipts = fail_jobs(provider, market.jail_after_failures() - 1)
    record = market.providers(provider)
    assert (record.recent_failures, record.jailed) == (market.jail_after_failures() - 1, False)
    assert all(emitted(tx, market.ProviderJailed) == [] for tx in receipts)


def test_threshold_failure_jails_and_logs_it(market, provider, fail_jobs):
    threshold = market.jail_after_failures()
    receipts = fail_jobs(provider, threshold)
    assert emitted(receipts[-1], market.ProviderJailed) == [
        {"provider": provider.address, "recent_failures": threshold}
    ]
    record = market.providers(provider)
    assert (record.recent_failures, record.jailed) == (threshold, True)


def test_jail_threshold_follows_governance(market, owner, provider, fail_jobs):
    market.set_jail_after_failures(1, sender=owner)
    fail_jobs(provider, 1)
    assert market.providers(provider).jailed


def test_jailed_provider_cannot_take_jobs(market, client, jailed_provider, create_job):
    job_id = create_job(client)
    with ape.reverts("registry: provider jailed"):
        market.accept_job(job_id, sender=jailed_provider)


def test_non_owner_cannot_unjail(market, jailed_provider, attacker):
    for caller in (attacker, jailed_provider):
        with ape.reverts("ownable: caller is not the owner"):
            market.unjail(jailed_provider, sender=caller)
    assert market.providers(jailed_provider).jailed


def test_provider_not_jailed_reverts(market, owner, provider, provider2, fail_jobs):
    fail_jobs(provider, market.jail_after_failures() - 1)
    for account in (provider, provider2):  # failing but not jailed; never registered
        with ape.reverts("registry: provider not jailed"):
            market.unjail(account, sender=owner)


def test_unjail_clears_jail_and_failures_and_logs_it(market, owner, jailed_provider):
    tx = market.unjail(jailed_provider, sender=owner)
    record = market.providers(jailed_provider)
    assert (record.jailed, record.recent_failures) == (False, 0)
    assert emitted(tx, market.ProviderUnjailed) == [{"provider": jailed_provider.address}]
    assert len(tx.events) == 1


def test_unjail_twice_reverts(market, owner, jailed_provider):
    market.unjail(jailed_provider, sender=owner)
    with ape.reverts("registry: provider not jailed"):
        market.unjail(jailed_provider, sender=owner)


def test_released_provider_takes_jobs_and_counts_failures_from_zero(
    market, owner, client, jailed_provider, create_job, fail_jobs, settle
):
    market.unjail(jailed_provider, sender=owner)
    job_id = create_job(client)
    market.accept_job(job_id, sender=jailed_provider)
    assert market.get_job(job_id).state == RUNNING
    settle(job_id, Outcome.COMPLETED, gpu_seconds=60)  # frees its one GPU for the jobs below
    # One short of the threshold again: not jailed, since unjail reset the count.
    fail_jobs(jailed_provider, market.jail_after_failures() - 1)
    assert market.providers(jailed_provider).jailed is False


def test_success_does_not_reset_the_failure_count(market, client, provider, fail_jobs, running_job, settle):
    # Before issue 9 a completed job reset the count, so failures could be washed away
    # with jobs the provider paid itself (tests/security/test_self_dealt_jobs_cannot_wash_jail.py).
    threshold = market.jail_after_failures()
    fail_jobs(provider, threshold - 1)
    settle(running_job(client, provider), Outcome.COMPLETED, gpu_seconds=60)
    record = market.providers(provider)
    assert (record.recent_failures, record.jailed) == (threshold - 1, False)
    fail_jobs(provider, 1)
    record = market.providers(provider)
    assert (record.recent_failures, record.jailed) == (threshold, True)
