"""escrow.expire_job: anyone ends a job that missed its accept deadline or its settle window."""

from __future__ import annotations

import ape
import pytest

from helpers.constants import CANCELLED, COMPLETED, DAY, EXPIRED, FAILED, OPEN, RUNNING
from unit.expectations import emitted, next_tx_at


def running_deadline(market, job_id: int) -> int:
    """Last second a running job can still be settled: start + max duration + SETTLE_GRACE."""
    job = market.get_job(job_id)
    return job.started_at + job.max_duration + market.settle_grace()


@pytest.mark.parametrize("offset", [-1, 0], ids=["before-deadline", "at-deadline"])
def test_open_job_before_its_deadline_has_passed_reverts(market, chain, client, keeper, create_job, offset: int):
    job_id = create_job(client)
    next_tx_at(chain, market.get_job(job_id).accept_deadline + offset)
    with ape.reverts("escrow: deadline not passed"):
        market.expire_job(job_id, sender=keeper)


@pytest.mark.parametrize("offset", [-1, 0], ids=["before-grace-end", "at-grace-end"])
def test_running_job_within_its_settle_window_reverts(
    market, chain, client, provider, keeper, running_job, offset: int
):
    job_id = running_job(client, provider)
    next_tx_at(chain, running_deadline(market, job_id) + offset)
    with ape.reverts("escrow: settle grace not passed"):
        market.expire_job(job_id, sender=keeper)


@pytest.mark.parametrize(
    "state",
    [0, COMPLETED, FAILED, CANCELLED, EXPIRED],
    ids=["unknown-id", "completed", "failed", "cancelled", "expired-twice"],
)
def test_job_not_open_or_running_reverts(market, chain, keeper, job_in_state, state: int):
    job_id = job_in_state(state)
    next_tx_at(chain, chain.pending_timestamp + 60 * DAY)  # past every deadline
    with ape.reverts("escrow: job not open or running"):
        market.expire_job(job_id, sender=keeper)


def test_open_job_expires_after_its_deadline(market, chain, payment_token, client, keeper, create_job, books):
    job_id = create_job(client)
    escrow = market.get_job(job_id).escrow
    next_tx_at(chain, market.get_job(job_id).accept_deadline + 1)

    tx = market.expire_job(job_id, sender=keeper)

    assert emitted(tx, market.JobExpired) == [
        {"job_id": job_id, "previous_state": OPEN, "refund": escrow, "collateral_released": 0}
    ]
    assert market.get_job(job_id).state == EXPIRED
    assert market.claimable(payment_token, client) == escrow
    books()


def test_running_job_expires_without_slash(
    market, chain, stake_token, payment_token, client, provider, keeper, ready_provider, create_job, books
):
    ready_provider(provider)
    free_before_accept = market.stake_of(provider).free
    job_id = create_job(client)
    market.accept_job(job_id, sender=provider)
    assert market.gpus_in_use(provider) == 1
    job = market.get_job(job_id)
    next_tx_at(chain, running_deadline(market, job_id) + 1)

    tx = market.expire_job(job_id, sender=keeper)

    assert emitted(tx, market.JobExpired) == [
        {"job_id": job_id, "previous_state": RUNNING, "refund": job.escrow, "collateral_released": job.collateral}
    ]
    # A silent committee is not the provider's fault: no slash, no failure counted.
    assert emitted(tx, market.Slashed) == []
    stake = market.stake_of(provider)
    assert (stake.free, stake.locked) == (free_before_accept, 0)
    assert (market.providers(provider).recent_failures, market.providers(provider).failure_window_start) == (0, 0)
    assert market.gpus_in_use(provider) == 0
    assert market.claimable(payment_token, client) == job.escrow
    assert market.claimable(payment_token, provider) == 0
    assert market.claimable(stake_token, client) == 0
    assert market.get_job(job_id).state == EXPIRED
    books()


@pytest.mark.parametrize("state", [OPEN, RUNNING])
def test_expire_works_while_paused(market, owner, chain, keeper, job_in_state, state: int):
    job_id = job_in_state(state)
    market.pause(sender=owner)
    job = market.get_job(job_id)
    deadline = job.accept_deadline if state == OPEN else running_deadline(market, job_id)
    next_tx_at(chain, deadline + 1)
    market.expire_job(job_id, sender=keeper)
    assert market.get_job(job_id).state == EXPIRED
