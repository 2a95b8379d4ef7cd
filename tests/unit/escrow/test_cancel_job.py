"""escrow.cancel_job: the client takes back the escrow of a job nobody has accepted."""

from __future__ import annotations

import ape
import pytest

from helpers.constants import CANCELLED, COMPLETED, EXPIRED, FAILED, RUNNING
from unit.expectations import emitted, next_tx_at


def test_caller_other_than_the_client_reverts(market, client, attacker, create_job):
    job_id = create_job(client)
    with ape.reverts("escrow: caller is not the client"):
        market.cancel_job(job_id, sender=attacker)


@pytest.mark.parametrize(
    "state",
    [0, RUNNING, COMPLETED, FAILED, CANCELLED, EXPIRED],
    ids=["unknown-id", "running", "completed", "failed", "cancelled-twice", "expired"],
)
def test_job_not_open_reverts(market, client, job_in_state, state: int):
    job_id = job_in_state(state)
    with ape.reverts("escrow: job not open"):
        market.cancel_job(job_id, sender=client)


def test_cancel_credits_the_escrow_and_logs(market, payment_token, client, create_job, books):
    job_id = create_job(client)
    escrow = market.get_job(job_id).escrow
    held = payment_token.balanceOf(market)

    tx = market.cancel_job(job_id, sender=client)

    assert emitted(tx, market.JobCancelled) == [{"job_id": job_id, "client": client, "refund": escrow}]
    assert market.get_job(job_id).state == CANCELLED
    # Credited for a pull, not pushed: the tokens stay in the market until claimed.
    assert market.claimable(payment_token, client) == escrow
    assert payment_token.balanceOf(market) == held
    books()


def test_cancel_works_while_paused_and_after_the_deadline(market, owner, chain, payment_token, client, create_job):
    job_id = create_job(client)
    market.pause(sender=owner)
    next_tx_at(chain, market.get_job(job_id).accept_deadline + 1)
    market.cancel_job(job_id, sender=client)
    assert market.claimable(payment_token, client) == market.get_job(job_id).escrow
