"""Every job ends in exactly one terminal state: once there, nothing moves it or its money.

Each of the five ways to end a job is followed by each terminal action (settle with
either outcome, expire, cancel), with a valid quorum and past every deadline, so the
only reason left to refuse is the job's state.
"""

from __future__ import annotations

from collections.abc import Callable

import ape
import pytest

from gpumarket.signing.eip712 import Outcome
from helpers.accounting import assert_conserved
from helpers.committee import job_report
from helpers.constants import CANCELLED, COMPLETED, DAY, EXPIRED, FAILED, HOUR

# Past every deadline a test job can have (accept window, duration, settle grace).
FAR_FUTURE = 30 * DAY


@pytest.fixture(params=["completed", "failed", "cancelled", "expired-while-open", "expired-while-running"])
def ended_job(request, market, chain, client, provider, running_job, create_job, settle, keeper) -> tuple[int, int]:
    """(job id, expected terminal state) of a job ended the way the parameter names."""
    if request.param == "completed":
        job_id = running_job(client, provider)
        settle(job_id, Outcome.COMPLETED, gpu_seconds=60)
        return job_id, COMPLETED
    if request.param == "failed":
        job_id = running_job(client, provider)
        settle(job_id, Outcome.FAILED)
        return job_id, FAILED
    if request.param == "cancelled":
        job_id = create_job(client)
        market.cancel_job(job_id, sender=client)
        return job_id, CANCELLED
    job_id = create_job(client) if request.param == "expired-while-open" else running_job(client, provider)
    chain.pending_timestamp += HOUR + market.settle_grace() + 1
    market.expire_job(job_id, sender=keeper)
    return job_id, EXPIRED


def settle_attempt(outcome: Outcome) -> Callable:
    def attempt(market, committee, domain, keeper, client, job_id):
        job = market.get_job(job_id)
        report = job_report(job_id, job.provider, outcome, gpu_seconds=60, epoch=market.epoch())
        with ape.reverts("escrow: job not running"):
            market.settle(report, committee.sign(domain, report), sender=keeper)

    return attempt


def expire_attempt(market, committee, domain, keeper, client, job_id):
    with ape.reverts("escrow: job not open or running"):
        market.expire_job(job_id, sender=keeper)


def cancel_attempt(market, committee, domain, keeper, client, job_id):
    with ape.reverts("escrow: job not open"):
        market.cancel_job(job_id, sender=client)


@pytest.mark.parametrize(
    "attempt",
    [settle_attempt(Outcome.COMPLETED), settle_attempt(Outcome.FAILED), expire_attempt, cancel_attempt],
    ids=["settle-completed", "settle-failed", "expire", "cancel"],
)
def test_a_terminal_job_cannot_end_again(
    ended_job, attempt, market, committee, domain, keeper, client, provider, treasury, chain, stake_token, payment_token
):
    job_id, terminal_state = ended_job
    tokens = [stake_token, payment_token]
    accounts = [client, provider, treasury, keeper]

    def books() -> tuple:
        return tuple(market.claimable(t, a) for t in tokens for a in accounts), market.stake_of(provider)

    before = books()
    chain.pending_timestamp += FAR_FUTURE
    attempt(market, committee, domain, keeper, client, job_id)
    assert market.get_job(job_id).state == terminal_state
    assert books() == before
    assert_conserved(market, tokens, [provider], accounts)
