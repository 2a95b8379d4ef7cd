"""gpus_in_use: the GPUs a provider's RUNNING jobs hold. accept_job takes the job's GPUs;
settle (COMPLETED or FAILED) and expire_job of a running job free them; an open job holds
none, so cancelling or expiring one changes nothing.

accept_job refusing a job that does not fit: test_accept_job.py; update_provider refusing a
count below it: test_update_provider.py.
"""

from __future__ import annotations

import pytest

from gpumarket.signing.eip712 import Outcome
from unit.expectations import next_tx_at

GPUS = 8


@pytest.fixture
def big_provider(provider, ready_provider):
    """An 8-GPU cpu-dev provider, verified and staked."""
    return ready_provider(provider, gpu_count=GPUS)


def test_unregistered_account_holds_none(market, attacker):
    assert market.gpus_in_use(attacker) == 0


def test_registered_provider_starts_with_none(market, provider, register):
    register(provider, gpu_count=GPUS)
    assert market.gpus_in_use(provider) == 0


def test_accept_takes_the_jobs_gpus(market, client, client2, big_provider, running_job):
    running_job(client, big_provider, gpu_count=3)
    assert market.gpus_in_use(big_provider) == 3
    running_job(client2, big_provider, gpu_count=5)
    assert market.gpus_in_use(big_provider) == GPUS


def test_counts_are_per_provider(market, client, provider, provider2, ready_provider, running_job):
    ready_provider(provider, gpu_count=4)
    ready_provider(provider2, gpu_count=4)
    running_job(client, provider, gpu_count=3)
    running_job(client, provider2, gpu_count=1)
    assert (market.gpus_in_use(provider), market.gpus_in_use(provider2)) == (3, 1)


@pytest.mark.parametrize("outcome", [Outcome.COMPLETED, Outcome.FAILED], ids=["completed", "failed"])
def test_settle_frees_the_jobs_gpus(market, client, big_provider, running_job, settle, outcome):
    kept = running_job(client, big_provider, gpu_count=2)
    ended = running_job(client, big_provider, gpu_count=5)
    settle(ended, outcome)
    assert market.gpus_in_use(big_provider) == 2
    settle(kept, outcome)
    assert market.gpus_in_use(big_provider) == 0


def test_expiring_a_running_job_frees_its_gpus(market, chain, client, keeper, big_provider, running_job):
    kept = running_job(client, big_provider, gpu_count=1, max_duration=7_200)
    expired = running_job(client, big_provider, gpu_count=4)
    job = market.get_job(expired)
    next_tx_at(chain, job.started_at + job.max_duration + market.settle_grace() + 1)
    market.expire_job(expired, sender=keeper)
    assert market.gpus_in_use(big_provider) == 1
    assert market.get_job(kept).provider == big_provider


@pytest.mark.parametrize("ending", ["cancel", "expire"])
def test_ending_an_open_job_changes_nothing(
    market, chain, client, keeper, big_provider, running_job, create_job, ending: str
):
    running_job(client, big_provider, gpu_count=2)
    for directed in (False, True):
        job_id = create_job(client, gpu_count=3, provider=big_provider if directed else None)
        if ending == "cancel":
            market.cancel_job(job_id, sender=client)
        else:
            next_tx_at(chain, market.get_job(job_id).accept_deadline + 1)
            market.expire_job(job_id, sender=keeper)
        assert market.gpus_in_use(big_provider) == 2


def test_freed_gpus_can_be_taken_again(market, client, big_provider, running_job, settle):
    for _ in range(3):  # whole capacity, three times over
        job_id = running_job(client, big_provider, gpu_count=GPUS)
        assert market.gpus_in_use(big_provider) == GPUS
        settle(job_id, Outcome.COMPLETED, gpu_seconds=1)
        assert market.gpus_in_use(big_provider) == 0
