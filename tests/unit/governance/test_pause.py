"""pause: owner only (see test_owner_only.py), logged, stops new jobs and nothing else."""

from __future__ import annotations

import ape

from gpumarket.signing.eip712 import Outcome
from helpers.constants import CANCELLED, COMPLETED, EXPIRED, HOUR, TOKEN
from unit.expectations import emitted


def test_pause_sets_paused_and_logs_the_caller(market, owner):
    tx = market.pause(sender=owner)
    assert market.paused() is True
    assert emitted(tx, market.Paused) == [{"account": owner.address}]
    assert len(tx.events) == 1


def test_pause_while_paused_reverts(market, owner):
    market.pause(sender=owner)
    with ape.reverts("pausable: contract is paused"):
        market.pause(sender=owner)


def test_pause_stops_create_job(market, owner, client, create_job):
    market.pause(sender=owner)
    with ape.reverts("pausable: contract is paused"):
        create_job(client)


def test_pause_stops_accept_job(market, owner, client, provider, ready_provider, create_job):
    ready_provider(provider)
    job_id = create_job(client)
    market.pause(sender=owner)
    with ape.reverts("pausable: contract is paused"):
        market.accept_job(job_id, sender=provider)


def test_pause_never_traps_funds(
    market, owner, chain, client, client2, provider, keeper, running_job, create_job, settle, payment_token, books
):
    # One job of every kind that holds funds, then the pause: each one can still be ended
    # and every credited balance pulled (docs/PROTOCOL.md: a pause never traps funds).
    running = running_job(client, provider)
    open_job = create_job(client)
    stale_open_job = create_job(client2, accept_window=HOUR)
    market.pause(sender=owner)

    settle(running, Outcome.COMPLETED, gpu_seconds=60)
    market.cancel_job(open_job, sender=client)
    chain.pending_timestamp += HOUR + 1
    market.expire_job(stale_open_job, sender=keeper)
    market.request_unstake(10 * TOKEN, sender=provider)
    for account in (client, client2, provider):
        market.claim(payment_token, sender=account)

    assert [market.get_job(j).state for j in (running, open_job, stale_open_job)] == [COMPLETED, CANCELLED, EXPIRED]
    assert market.stake_of(provider).unbonding == 10 * TOKEN
    assert market.paused() is True
    books()
