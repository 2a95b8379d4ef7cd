"""The failure window behind jail (registry, counted by escrow.settle): a FAILED job counts in
the provider's window; a window opens at a failure once FAILURE_WINDOW (7 days) has passed
since the last one opened, and the count starts again there; JAIL_AFTER_FAILURES failures
in one window jail. Completed jobs leave the count alone; unjail clears it.

Failures are real here: jobs accepted and settled FAILED by quorum-signed reports, each
settlement pinned to the second the case is about.
"""

from __future__ import annotations

import pytest

from gpumarket.signing.eip712 import Outcome
from unit.expectations import emitted, next_tx_at

FAILURE_WINDOW = 7 * 86_400
GPUS = 8  # enough for every job of a case to run at once


@pytest.fixture
def jobs(market, client, provider, ready_provider, running_job):
    """Builder: `count` running 1-GPU jobs of `client` on `provider` (8 GPUs, verified, staked)."""
    ready_provider(provider, gpu_count=GPUS)

    def start(count: int) -> list[int]:
        return [running_job(client, provider) for _ in range(count)]

    return start


@pytest.fixture
def settle_at(chain, settle):
    """Settles `job_id` with `outcome` in a block at `timestamp` (default: now)."""

    def call(job_id: int, outcome=Outcome.FAILED, timestamp: int | None = None):
        next_tx_at(chain, timestamp)
        return settle(job_id, outcome, gpu_seconds=60 if outcome == Outcome.COMPLETED else 0)

    return call


def window(market, provider) -> tuple[int, int, bool]:
    record = market.providers(provider)
    return record.recent_failures, record.failure_window_start, record.jailed


def test_first_failure_opens_the_window_and_later_ones_keep_it(market, chain, provider, jobs, settle_at, block_time):
    first, second = jobs(2)
    opened = block_time(settle_at(first))
    assert window(market, provider) == (1, opened, False)
    settle_at(second, timestamp=opened + 3_600)
    assert window(market, provider) == (2, opened, False)


def test_failures_count_across_completed_jobs(market, provider, jobs, settle_at):
    # Jobs that complete in between, self-dealt or not, do not reset the count.
    threshold = market.jail_after_failures()
    job_ids = jobs(2 * threshold - 1)
    failures = 0
    for index, job_id in enumerate(job_ids):
        outcome = Outcome.FAILED if index % 2 == 0 else Outcome.COMPLETED
        tx = settle_at(job_id, outcome)
        failures += outcome == Outcome.FAILED
        assert market.providers(provider).recent_failures == failures
        jailed_now = failures == threshold and outcome == Outcome.FAILED
        assert emitted(tx, market.ProviderJailed) == (
            [{"provider": provider, "recent_failures": threshold}] if jailed_now else []
        )
    assert market.providers(provider).jailed


@pytest.mark.parametrize(
    "offset, same_window",
    [(FAILURE_WINDOW - 1, True), (FAILURE_WINDOW, False), (30 * 86_400, False)],
    ids=["last-second-of-the-window", "window-just-closed", "long-after"],
)
def test_the_window_closes_after_seven_days(
    market, provider, jobs, settle_at, block_time, offset: int, same_window: bool
):
    threshold = market.jail_after_failures()
    job_ids = jobs(threshold)
    opened = block_time(settle_at(job_ids[0]))
    for job_id in job_ids[1:-1]:
        settle_at(job_id, timestamp=opened + 60)
    assert window(market, provider) == (threshold - 1, opened, False)

    # The failure that would jail, at `offset` after the window opened.
    tx = settle_at(job_ids[-1], timestamp=opened + offset)

    if same_window:
        assert window(market, provider) == (threshold, opened, True)
        assert emitted(tx, market.ProviderJailed) == [{"provider": provider, "recent_failures": threshold}]
    else:
        # A new window opens at this failure and counts it alone.
        assert window(market, provider) == (1, opened + offset, False)
        assert emitted(tx, market.ProviderJailed) == []


def test_the_window_is_fixed_so_two_windows_hold_twice_threshold_minus_one(
    market, provider, jobs, settle_at, block_time
):
    # The documented limit: the window does not slide, so threshold - 1 failures at the end
    # of one window and threshold - 1 at the start of the next jail nobody. Each was slashed.
    threshold = market.jail_after_failures()
    job_ids = jobs(2 * (threshold - 1) + 1)
    opened = block_time(settle_at(job_ids[0], timestamp=None))
    late = opened + FAILURE_WINDOW - 60
    for job_id in job_ids[1 : threshold - 1]:
        settle_at(job_id, timestamp=late)
    second_window = opened + FAILURE_WINDOW
    for index, job_id in enumerate(job_ids[threshold - 1 : 2 * (threshold - 1)]):
        settle_at(job_id, timestamp=second_window + index)
    assert window(market, provider) == (threshold - 1, second_window, False)
    # One more inside the second window jails.
    settle_at(job_ids[-1], timestamp=second_window + 3_600)
    assert window(market, provider) == (threshold, second_window, True)


def test_unjail_clears_the_count_but_the_window_goes_on(market, owner, provider, jobs, settle_at, block_time):
    threshold = market.jail_after_failures()
    job_ids = jobs(2 * threshold)  # accepted before the jail: they can still fail after it
    opened = block_time(settle_at(job_ids[0]))
    for job_id in job_ids[1:threshold]:
        settle_at(job_id, timestamp=opened + 60)
    assert window(market, provider) == (threshold, opened, True)

    market.unjail(provider, sender=owner)
    assert window(market, provider) == (0, opened, False)

    # Failures in the same window count from zero again, and jail at the threshold again.
    for count, job_id in enumerate(job_ids[threshold:], 1):
        tx = settle_at(job_id, timestamp=opened + 120)
        assert window(market, provider) == (count, opened, count >= threshold)
        if count == threshold:
            assert emitted(tx, market.ProviderJailed) == [{"provider": provider, "recent_failures": threshold}]


def test_expired_jobs_do_not_count(market, chain, keeper, provider, jobs, settle_at):
    # A silent committee is not the provider's fault: expiry neither counts nor opens a window.
    [job_id] = jobs(1)
    job = market.get_job(job_id)
    next_tx_at(chain, job.started_at + job.max_duration + market.settle_grace() + 1)
    market.expire_job(job_id, sender=keeper)
    assert window(market, provider) == (0, 0, False)
