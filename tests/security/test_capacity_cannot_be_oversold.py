"""A provider cannot sell the same GPUs twice (issue 9, attack 1).

The attack: a provider verified for one GPU takes every job that fits one GPU, from as many
clients as will post them, and runs none of them well (or runs them on hardware it does not
have). Each job only locks a collateral of 20% of its own value, so overselling multiplies
the escrow the provider controls for the same stake. Before issue 9 accept_job only checked
that a job fit the claimed count, never what was already running.

The market now counts the GPUs running jobs hold (gpus_in_use) and refuses a job that does
not fit in what is free; nor can the provider shrink its claim below what it runs. Every
step here is a real transaction, every report signed by a quorum of the committee.
"""

from __future__ import annotations

import ape
import pytest

from gpumarket.signing.eip712 import Outcome
from helpers.constants import CPU_DEV, OPEN, PRICE, RUNNING

ENDPOINT = "http://127.0.0.1:8700"


@pytest.mark.parametrize("directed", [False, True], ids=["open-jobs", "jobs-directed-to-it"])
def test_one_gpu_is_sold_once(root_kit, market, provider, client, client2, attacker, directed):
    kit = root_kit
    kit.ready_provider(provider)  # verified for one cpu-dev GPU
    # Three clients each want one GPU for an hour; the provider grabs them all.
    jobs = [kit.create_job(buyer, provider=provider if directed else None) for buyer in (client, client2, attacker)]
    market.accept_job(jobs[0], sender=provider)
    for job_id in jobs[1:]:
        with ape.reverts("registry: not enough free gpus"):
            market.accept_job(job_id, sender=provider)
    assert [market.get_job(job_id).state for job_id in jobs] == [RUNNING, OPEN, OPEN]
    assert market.gpus_in_use(provider) == 1

    # Once the first job is settled its GPU is free, and the next client is served.
    kit.settle(jobs[0], Outcome.COMPLETED, gpu_seconds=600)
    market.accept_job(jobs[1], sender=provider)
    assert market.get_job(jobs[1]).state == RUNNING
    kit.assert_conserved()


def test_a_big_provider_cannot_sell_more_gpus_than_it_has(root_kit, market, provider, client, client2):
    kit = root_kit
    kit.ready_provider(provider, gpu_count=8)
    five = kit.create_job(client, gpu_count=5)
    four = kit.create_job(client2, gpu_count=4)
    three = kit.create_job(client2, gpu_count=3)
    market.accept_job(five, sender=provider)
    with ape.reverts("registry: not enough free gpus"):
        market.accept_job(four, sender=provider)  # 5 + 4 > 8
    market.accept_job(three, sender=provider)  # 5 + 3 = 8: exactly full
    assert market.gpus_in_use(provider) == 8
    one_more = kit.create_job(client, gpu_count=1)
    with ape.reverts("registry: not enough free gpus"):
        market.accept_job(one_more, sender=provider)


def test_shrinking_the_claim_under_running_jobs_is_refused(root_kit, market, provider, client, client2):
    # The count is what the market sells: a provider running four GPUs' worth of jobs
    # cannot claim one GPU (and then, say, sell a new verification of it) meanwhile.
    kit = root_kit
    kit.ready_provider(provider, gpu_count=4)
    job_id = kit.running_job(client, provider, gpu_count=4)
    with ape.reverts("registry: fewer gpus than in use"):
        market.update_provider(CPU_DEV, 1, PRICE, ENDPOINT, sender=provider)
    assert market.providers(provider).gpu_count == 4

    kit.settle(job_id, Outcome.FAILED)
    market.update_provider(CPU_DEV, 1, PRICE, ENDPOINT, sender=provider)
    assert (market.providers(provider).gpu_count, market.gpus_in_use(provider)) == (1, 0)
