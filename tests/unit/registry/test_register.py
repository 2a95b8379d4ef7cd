"""register: records the caller's claim once, logs it, and leaves it unverified.

Every bound of the claim: test_claim_bounds.py.
"""

from __future__ import annotations

import ape

from helpers.constants import CPU_DEV, H100, PRICE
from unit.expectations import emitted

ENDPOINT = "https://gpu.example:8700"


def test_records_the_claim_unverified_and_unjailed(market, provider):
    market.register(H100, 8, PRICE, ENDPOINT, sender=provider)
    record = market.providers(provider)
    assert record.gpu_class == H100
    assert record.gpu_count == 8
    assert record.price_per_gpu_second == PRICE
    assert record.endpoint == ENDPOINT
    assert record.claim_version == 0
    assert (record.verified_until, record.recent_failures, record.failure_window_start, record.jailed) == (
        0,
        0,
        0,
        False,
    )
    assert market.gpus_in_use(provider) == 0


def test_logs_provider_registered(market, provider):
    tx = market.register(H100, 8, PRICE, ENDPOINT, sender=provider)
    assert emitted(tx, market.ProviderRegistered) == [
        {
            "provider": provider.address,
            "gpu_class": H100,
            "gpu_count": 8,
            "price_per_gpu_second": PRICE,
            "endpoint": ENDPOINT,
        }
    ]
    assert len(tx.events) == 1


def test_registering_twice_reverts_and_keeps_the_first_claim(market, provider, register):
    register(provider)
    before = market.providers(provider)
    for gpu_class, gpu_count in ((CPU_DEV, 1), (H100, 4)):
        with ape.reverts("registry: already registered"):
            market.register(gpu_class, gpu_count, 2 * PRICE, ENDPOINT, sender=provider)
    assert market.providers(provider) == before


def test_providers_register_independently(market, provider, provider2, register):
    register(provider)
    market.register(H100, 2, 3 * PRICE, ENDPOINT, sender=provider2)
    assert market.providers(provider).gpu_class == CPU_DEV
    assert market.providers(provider2).gpu_class == H100


def test_registered_provider_cannot_take_jobs_before_verification(market, client, provider, register, create_job):
    register(provider)
    market.stake(market.min_stake() * 2, sender=provider)
    job_id = create_job(client)
    with ape.reverts("registry: hardware not verified"):
        market.accept_job(job_id, sender=provider)
