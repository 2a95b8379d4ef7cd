"""update_provider: a changed class or GPU count is a new claim version and voids the
verification; price and endpoint changes keep both; running jobs keep their accepted price,
and the GPU count cannot drop below the GPUs running jobs hold.

Every bound of the claim: test_claim_bounds.py.
"""

from __future__ import annotations

import ape
import pytest

from gpumarket.signing.eip712 import Outcome
from helpers.committee import hardware_report
from helpers.constants import CPU_DEV, DAY, H100, PRICE
from unit.expectations import emitted, next_tx_at

CURRENT = {"gpu_class": CPU_DEV, "gpu_count": 1, "price": PRICE, "endpoint": "http://127.0.0.1:8700"}

# (changed fields, whether PROTOCOL's rule voids the verification: class or count changed)
UPDATES = [
    pytest.param({"gpu_class": H100}, True, id="class"),
    pytest.param({"gpu_count": 2}, True, id="gpu-count"),
    pytest.param({"gpu_class": H100, "price": 5 * PRICE}, True, id="class-and-price"),
    pytest.param({"price": 5 * PRICE}, False, id="price"),
    pytest.param({"endpoint": "https://moved.example"}, False, id="endpoint"),
    pytest.param({"price": 1, "endpoint": "h"}, False, id="price-and-endpoint"),
    pytest.param({}, False, id="nothing"),
]


def update(market, account, claim: dict):
    return market.update_provider(
        claim["gpu_class"], claim["gpu_count"], claim["price"], claim["endpoint"], sender=account
    )


@pytest.fixture
def verified_provider(market, provider, register, verify):
    register(provider, **CURRENT)
    verify(provider)
    assert market.is_verified(provider)
    return provider


def test_unregistered_caller_reverts(market, provider):
    with ape.reverts("registry: not registered"):
        update(market, provider, CURRENT)


@pytest.mark.parametrize("changes, voids", UPDATES)
def test_stores_the_new_claim_and_voids_verification_only_on_class_or_count(
    market, verified_provider, changes: dict, voids: bool
):
    verified_until = market.providers(verified_provider).verified_until
    new = {**CURRENT, **changes}
    update(market, verified_provider, new)
    record = market.providers(verified_provider)
    assert (record.gpu_class, record.gpu_count, record.price_per_gpu_second, record.endpoint) == (
        new["gpu_class"],
        new["gpu_count"],
        new["price"],
        new["endpoint"],
    )
    assert record.verified_until == (0 if voids else verified_until)
    assert market.is_verified(verified_provider) is not voids


@pytest.mark.parametrize("changes, voids", UPDATES)
def test_claim_version_counts_class_and_count_changes_only(market, verified_provider, changes: dict, voids: bool):
    update(market, verified_provider, {**CURRENT, **changes})
    assert market.providers(verified_provider).claim_version == (1 if voids else 0)


def test_claim_version_counts_every_change_even_back_to_an_earlier_claim(market, verified_provider):
    steps = [
        ({"gpu_count": 2}, 1),
        ({"gpu_count": 2, "price": 3 * PRICE}, 1),
        ({"gpu_count": 2, "price": 3 * PRICE, "endpoint": "https://moved.example"}, 1),
        ({"gpu_count": 2, "gpu_class": H100}, 2),
        ({}, 3),  # back to the registered claim: still a new version, to be measured again
        ({}, 3),
    ]
    for changes, version in steps:
        tx = update(market, verified_provider, {**CURRENT, **changes})
        assert market.providers(verified_provider).claim_version == version
        assert emitted(tx, market.ProviderUpdated)[0]["claim_version"] == version


@pytest.mark.parametrize("changes, voids", UPDATES[:1] + UPDATES[3:4])
def test_logs_provider_updated(market, verified_provider, changes: dict, voids: bool):
    new = {**CURRENT, **changes}
    tx = update(market, verified_provider, new)
    assert emitted(tx, market.ProviderUpdated) == [
        {
            "provider": verified_provider.address,
            "gpu_class": new["gpu_class"],
            "gpu_count": new["gpu_count"],
            "claim_version": 1 if voids else 0,
            "price_per_gpu_second": new["price"],
            "endpoint": new["endpoint"],
        }
    ]
    assert len(tx.events) == 1


def test_new_claim_takes_jobs_again_after_a_matching_report(
    market, chain, committee, domain, keeper, client, verified_provider, create_job
):
    market.stake(market.min_stake() * 2, sender=verified_provider)
    update(market, verified_provider, {**CURRENT, "gpu_count": 2})
    job_id = create_job(client, gpu_count=2)
    with ape.reverts("registry: hardware not verified"):
        market.accept_job(job_id, sender=verified_provider)

    def passing_report(gpu_count: int, claim_version: int):
        chain.pending_timestamp += 1  # a later report: valid_until must move forward
        at = next_tx_at(chain)
        floor = market.class_floor(CPU_DEV)
        report = hardware_report(
            verified_provider,
            CPU_DEV,
            gpu_count,
            floor * gpu_count,
            at + DAY,
            epoch=market.epoch(),
            claim_version=claim_version,
        )
        return market.submit_hardware_report(report, committee.sign(domain, report), sender=keeper)

    # A passing report of the claim as it was (version 0, one GPU) does not verify the new one.
    with ape.reverts("verification: outdated claim"):
        passing_report(1, 0)
    passing_report(2, 1)  # measures the current claim: 2 GPUs, version 1
    market.accept_job(job_id, sender=verified_provider)
    assert market.get_job(job_id).provider == verified_provider


def test_running_job_keeps_its_accepted_price(market, client, provider, running_job):
    job_id = running_job(client, provider)
    update(market, provider, {**CURRENT, "price": 2 * PRICE})
    assert market.providers(provider).price_per_gpu_second == 2 * PRICE
    assert market.get_job(job_id).price_per_gpu_second == PRICE


def test_update_does_not_clear_failures_or_jail(market, provider, fail_jobs):
    fail_jobs(provider, market.jail_after_failures())
    window_start = market.providers(provider).failure_window_start
    update(market, provider, {**CURRENT, "gpu_class": H100, "endpoint": "https://fresh.example"})
    record = market.providers(provider)
    assert record.jailed is True
    assert (record.recent_failures, record.failure_window_start) == (market.jail_after_failures(), window_start)


# ----------------------------------------------------------------------------- GPUs in use


@pytest.fixture
def busy_provider(market, client, provider, ready_provider, running_job):
    """A 3-GPU provider whose two running 1-GPU jobs hold 2 GPUs; returns the job ids."""
    ready_provider(provider, gpu_count=3)
    jobs = [running_job(client, provider) for _ in range(2)]
    assert market.gpus_in_use(provider) == 2
    return jobs


@pytest.mark.parametrize(
    "changes", [{"gpu_count": 1}, {"gpu_count": 1, "gpu_class": H100}], ids=["count", "count-and-class"]
)
def test_gpu_count_below_gpus_in_use_reverts(market, provider, busy_provider, changes: dict):
    before = market.providers(provider)
    with ape.reverts("registry: fewer gpus than in use"):
        update(market, provider, {**CURRENT, **changes})
    assert market.providers(provider) == before


@pytest.mark.parametrize(
    "changes",
    [{"gpu_count": 2}, {"gpu_count": 3, "price": 2 * PRICE}, {"gpu_count": 3, "gpu_class": H100}, {"gpu_count": 8}],
    ids=["down-to-in-use", "same-count-new-price", "same-count-new-class", "more-gpus"],
)
def test_gpu_count_at_or_above_gpus_in_use_is_allowed_while_jobs_run(market, provider, busy_provider, changes: dict):
    new = {**CURRENT, **changes}
    update(market, provider, new)
    assert market.providers(provider).gpu_count == new["gpu_count"]
    assert market.gpus_in_use(provider) == 2
    assert all(market.get_job(job_id).provider == provider for job_id in busy_provider)


@pytest.mark.parametrize("ending", [Outcome.COMPLETED, Outcome.FAILED], ids=["completed", "failed"])
def test_gpu_count_can_drop_once_the_jobs_end(market, provider, busy_provider, settle, ending):
    one_gpu = {**CURRENT, "gpu_count": 1}
    with ape.reverts("registry: fewer gpus than in use"):
        update(market, provider, one_gpu)
    settle(busy_provider[0], ending)
    assert market.gpus_in_use(provider) == 1
    update(market, provider, one_gpu)
    assert (market.providers(provider).gpu_count, market.gpus_in_use(provider)) == (1, 1)
