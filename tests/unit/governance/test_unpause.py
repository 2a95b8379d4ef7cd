"""unpause: owner only (see test_owner_only.py), only while paused, logged, reopens jobs."""

from __future__ import annotations

import ape

from helpers.constants import OPEN, RUNNING
from unit.expectations import emitted


def test_unpause_while_not_paused_reverts(market, owner):
    with ape.reverts("pausable: contract is not paused"):
        market.unpause(sender=owner)


def test_unpause_clears_paused_and_logs_the_caller(market, owner):
    market.pause(sender=owner)
    tx = market.unpause(sender=owner)
    assert market.paused() is False
    assert emitted(tx, market.Unpaused) == [{"account": owner.address}]
    assert len(tx.events) == 1


def test_jobs_can_be_created_and_accepted_again(market, owner, client, provider, ready_provider, create_job):
    ready_provider(provider)
    market.pause(sender=owner)
    market.unpause(sender=owner)
    job_id = create_job(client)
    assert market.get_job(job_id).state == OPEN
    market.accept_job(job_id, sender=provider)
    assert market.get_job(job_id).state == RUNNING


def test_can_pause_again_after_unpause(market, owner):
    market.pause(sender=owner)
    market.unpause(sender=owner)
    market.pause(sender=owner)
    assert market.paused() is True
