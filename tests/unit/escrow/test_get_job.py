"""escrow.get_job: a job unpacked, with its escrow and collateral."""

from __future__ import annotations

from helpers.constants import CPU_DEV, HOUR, OPEN, PRICE, RUNNING
from unit.expectations import ZERO_ADDRESS, ceil_bps, next_tx_at

SPEC_HASH = b"\xab" * 32


def test_unknown_job_is_all_zero(market):
    job = market.get_job(1)
    assert tuple(job) == (ZERO_ADDRESS, ZERO_ADDRESS, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b"\x00" * 32)


def test_open_job(market, chain, client, create_job):
    deadline = next_tx_at(chain) + 2 * HOUR  # create_job sets it relative to the pending time
    job_id = create_job(
        client, gpu_count=3, max_price=5 * PRICE, max_duration=HOUR, spec_hash=SPEC_HASH, accept_window=2 * HOUR
    )

    job = market.get_job(job_id)

    assert job.client == client
    assert job.provider == ZERO_ADDRESS
    assert (job.state, job.gpu_class, job.gpu_count) == (OPEN, CPU_DEV, 3)
    assert (job.max_price_per_gpu_second, job.price_per_gpu_second) == (5 * PRICE, 0)
    assert (job.max_duration, job.accept_deadline) == (HOUR, deadline)
    assert (job.started_at, job.collateral) == (0, 0)
    assert job.escrow == 5 * PRICE * 3 * HOUR
    assert job.spec_hash == SPEC_HASH


def test_directed_job(market, client, provider, register, create_job):
    register(provider)
    job_id = create_job(client, provider=provider)

    job = market.get_job(job_id)

    assert (job.client, job.provider, job.state) == (client, provider, OPEN)
    assert (job.price_per_gpu_second, job.started_at, job.collateral) == (0, 0, 0)


def test_running_job(market, client, provider, ready_provider, create_job):
    ready_provider(provider)
    job_id = create_job(client, gpu_count=1, max_price=2 * PRICE, max_duration=HOUR)
    started_at = market.accept_job(job_id, sender=provider).timestamp

    job = market.get_job(job_id)

    assert (job.client, job.provider, job.state) == (client, provider, RUNNING)
    assert (job.price_per_gpu_second, job.started_at) == (PRICE, started_at)
    # The collateral is valued at the accepted price, not at the client's maximum.
    assert job.collateral == ceil_bps(PRICE * 1 * HOUR, market.collateral_bps())
    assert job.escrow == 2 * PRICE * 1 * HOUR
