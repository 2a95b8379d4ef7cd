"""Fixtures of the ledger unit tests (shared ones come from unit.expectations)."""

from __future__ import annotations

import pytest

from helpers.constants import HOUR, PRICE
from unit.expectations import books  # noqa: F401  (re-exported fixtures)

# Terms of the job whose refund creates a claimable balance: escrow = max price x GPUs x seconds.
MAX_PRICE = 2 * PRICE
GPU_COUNT = 2
MAX_DURATION = HOUR
ESCROW = MAX_PRICE * GPU_COUNT * MAX_DURATION


@pytest.fixture
def refund_to_claim(market, create_job):
    """Builder: `client_account` creates and cancels a job, so its escrow becomes claimable."""

    def build(client_account) -> int:
        job_id = create_job(client_account, gpu_count=GPU_COUNT, max_price=MAX_PRICE, max_duration=MAX_DURATION)
        market.cancel_job(job_id, sender=client_account)
        return ESCROW

    return build
