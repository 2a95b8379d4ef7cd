"""update_provider: a changed class or GPU count voids the verification; price and
endpoint changes keep it; running jobs keep their accepted price.

Every bound of the claim: test_claim_bounds.py.
"""

from __future__ import annotations

import ape
import pytest

from helpers.constants import CPU_DEV, H100, PRICE
from unit.expectations import emitted

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
    return market.update_provider(claim["gpu_class"], claim["gpu_count"], claim["price"], claim["endpoint"], sender=account)


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


@pytest.mark.parametrize("changes, voids", UPDATES[:1] + UPDATES[3:4])
def test_logs_provider_updated(market, verified_provider, changes: dict, voids: bool):
    new = {**CURRENT, **changes}
    tx = update(market, verified_provider, new)
    assert emitted(tx, market.ProviderUpdated) == [
        {
            "provider": verified_provider.address,
            "gpu_class": new["gpu_class"],
            "gpu_count": new["gpu_count"],
            "price_per_gpu_second": new["price"],
            "endpoint": new["endpoint"],
        }
    ]
    assert len(tx.events) == 1


def test_new_claim_takes_jobs_again_after_a_matching_report(market, chain, client, verified_provider, verify, create_job):
    market.stake(market.min_stake() * 2, sender=verified_provider)
    update(market, verified_provider, {**CURRENT, "gpu_count": 2})
    job_id = create_job(client, gpu_count=2)
    with ape.reverts("registry: hardware not verified"):
        market.accept_job(job_id, sender=verified_provider)
    chain.pending_timestamp += 1  # a later report: valid_until must move forward
    verify(verified_provider)  # measures the current claim: 2 GPUs
    market.accept_job(job_id, sender=verified_provider)
    assert market.get_job(job_id).provider == verified_provider


def test_running_job_keeps_its_accepted_price(market, client, provider, running_job):
    job_id = running_job(client, provider)
    update(market, provider, {**CURRENT, "price": 2 * PRICE})
    assert market.providers(provider).price_per_gpu_second == 2 * PRICE
    assert market.get_job(job_id).price_per_gpu_second == PRICE


def test_update_does_not_clear_failures_or_jail(market, provider, fail_jobs):
    fail_jobs(provider, market.jail_after_failures())
    update(market, provider, {**CURRENT, "gpu_class": H100, "endpoint": "https://fresh.example"})
    record = market.providers(provider)
    assert record.jailed is True
    assert record.consecutive_failures == market.jail_after_failures()
