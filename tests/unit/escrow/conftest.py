"""Fixtures of the escrow unit tests (shared ones come from unit.expectations)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gpumarket.signing.eip712 import JobReport, Outcome
from helpers.committee import job_report
from helpers.constants import CANCELLED, COMPLETED, EXPIRED, FAILED, HOUR, RUNNING
from unit.expectations import books, next_tx_at  # noqa: F401  (re-exported fixtures)

# An id no job has: get_job returns state 0 for it.
UNKNOWN_JOB = 999


@pytest.fixture
def signed_job_report(market, committee, domain) -> Callable[..., tuple[JobReport, list[bytes]]]:
    """Builder: a JobReport for the current epoch and the committee's quorum signatures on it."""

    def build(job_id: int, provider, outcome=Outcome.COMPLETED, gpu_seconds: int = 0, signers: int | None = None):
        report = job_report(job_id, provider, outcome, gpu_seconds, epoch=market.epoch())
        return report, committee.sign(domain, report, signers=signers)

    return build


@pytest.fixture
def job_in_state(market, chain, client, provider, create_job, running_job, settle) -> Callable[[int], int]:
    """Builder: a job of `client` (taken by `provider` when it ran) brought to `state`; 0 = no job."""

    def build(state: int) -> int:
        if state == 0:
            return UNKNOWN_JOB
        if state in (RUNNING, COMPLETED, FAILED):
            job_id = running_job(client, provider)
            if state != RUNNING:
                settle(job_id, Outcome.COMPLETED if state == COMPLETED else Outcome.FAILED)
            return job_id
        job_id = create_job(client, accept_window=HOUR)
        if state == CANCELLED:
            market.cancel_job(job_id, sender=client)
        elif state == EXPIRED:
            next_tx_at(chain, market.get_job(job_id).accept_deadline + 1)
            market.expire_job(job_id, sender=client)
        assert market.get_job(job_id).state == state
        return job_id

    return build
