"""Fixtures of the registry unit tests (shared ones come from unit.expectations)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gpumarket.signing.eip712 import Outcome
from unit.expectations import books  # noqa: F401  (re-exported fixtures)


@pytest.fixture
def fail_jobs(client, running_job, settle) -> Callable:
    """Builder: `count` jobs of `client`, each accepted by `provider_account` and settled
    FAILED by a quorum-signed report; returns the settle receipts."""

    def run(provider_account, count: int) -> list:
        receipts = []
        for _ in range(count):
            job_id = running_job(client, provider_account)
            receipts.append(settle(job_id, Outcome.FAILED))
        return receipts

    return run


@pytest.fixture
def block_time(chain) -> Callable[[object], int]:
    """The timestamp of the block that mined `receipt`."""

    def of(receipt) -> int:
        return chain.blocks[receipt.block_number].timestamp

    return of
