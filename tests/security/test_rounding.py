"""Rounding never favours the caller; a slash that would round to zero is at least 1 unit.

docs/PROTOCOL.md: amounts charged to a provider (collateral, fees, slashes) round up, amounts
owed to the harmed client (its share of a slash) round up, and the books balance to the
unit afterwards. Expectations are computed here from those rules on amounts small and
odd enough that every division has a remainder.
"""

from __future__ import annotations

import pytest

from gpumarket.signing.eip712 import Outcome
from helpers.accounting import assert_conserved
from helpers.constants import BPS, CLASS_FLOORS, CPU_DEV, DAY


def ceil_bps(amount: int, bps: int) -> int:
    return -(-amount * bps // BPS)


@pytest.fixture
def books(market, stake_token, payment_token, provider, client, treasury):
    """Checks conservation over every account these tests touch."""
    return lambda: assert_conserved(market, [stake_token, payment_token], [provider], [provider, client, treasury])


# (price per GPU-second, GPU count, max duration): job values 1, 21 and 3,003 units.
TINY_JOBS = [(1, 1, 1), (1, 3, 7), (3, 1, 1_001)]


@pytest.mark.parametrize("price,gpu_count,duration", TINY_JOBS)
@pytest.mark.parametrize("slash_bps,client_share_bps", [(1, 5_000), (1, 1), (1, 0), (9_999, 3_333)])
def test_a_failed_job_slashes_at_least_one_unit_and_rounds_up(
    price,
    gpu_count,
    duration,
    slash_bps,
    client_share_bps,
    market,
    owner,
    client,
    provider,
    treasury,
    ready_provider,
    create_job,
    settle,
    stake_token,
    books,
):
    market.set_slash_bps(slash_bps, sender=owner)
    market.set_client_share_bps(client_share_bps, sender=owner)
    ready_provider(provider, price=price, gpu_count=gpu_count)
    job_id = create_job(client, gpu_count=gpu_count, max_price=price, max_duration=duration)
    market.accept_job(job_id, sender=provider)

    job = market.get_job(job_id)
    assert job.collateral == ceil_bps(price * gpu_count * duration, market.collateral_bps())
    tx = settle(job_id, Outcome.FAILED)

    slashed = ceil_bps(job.collateral, slash_bps)
    client_share = ceil_bps(slashed, client_share_bps)
    assert slashed >= 1
    [event] = tx.decode_logs(market.Slashed)
    assert event.event_arguments == {
        "provider": provider.address,
        "amount": slashed,
        "beneficiary": client.address,
        "beneficiary_share": client_share,
    }
    assert market.claimable(stake_token, client) == client_share
    assert market.claimable(stake_token, treasury) == slashed - client_share
    books()


# (price, billed GPU-seconds asked for, protocol fee bps); duration 100 caps the billing.
FEE_CASES = [(1, 1, 250), (1, 39, 250), (1, 41, 250), (7, 13, 1_000), (3, 99, 1), (5, 10**6, 250), (1, 1, 0)]


@pytest.mark.parametrize("price,gpu_seconds,fee_bps", FEE_CASES)
def test_the_protocol_fee_rounds_up_and_the_rest_is_exact(
    price,
    gpu_seconds,
    fee_bps,
    market,
    owner,
    client,
    provider,
    treasury,
    ready_provider,
    running_job,
    settle,
    payment_token,
    books,
):
    market.set_protocol_fee_bps(fee_bps, sender=owner)
    ready_provider(provider, price=price)
    job_id = running_job(client, provider, max_price=2 * price, max_duration=100)
    escrow = market.get_job(job_id).escrow
    tx = settle(job_id, Outcome.COMPLETED, gpu_seconds=gpu_seconds)

    billed = min(gpu_seconds, 100)
    payment = price * billed
    fee = ceil_bps(payment, fee_bps)
    [event] = tx.decode_logs(market.JobSettled)
    assert (event.gpu_seconds, event.provider_payment, event.protocol_fee, event.client_refund) == (
        billed,
        payment - fee,
        fee,
        escrow - payment,
    )
    assert market.claimable(payment_token, provider) == payment - fee
    assert market.claimable(payment_token, treasury) == fee
    assert market.claimable(payment_token, client) == escrow - payment
    books()


@pytest.mark.parametrize("stake", [1, 9_999, 10_001])
def test_a_spoof_slash_on_a_tiny_stake_takes_at_least_one_unit(
    stake, market, owner, provider, register, verify, stake_token, treasury, books
):
    market.set_min_stake(1, sender=owner)
    market.set_spoof_slash_bps(1, sender=owner)
    register(provider)
    market.stake(stake, sender=provider)

    tx = verify(provider, measured=0, valid_for=DAY)

    slashed = ceil_bps(stake, 1)
    assert slashed >= 1
    [event] = tx.decode_logs(market.HardwareRejected)
    assert event.event_arguments == {
        "provider": provider.address,
        "gpu_class": CPU_DEV,
        "gpu_count": 1,
        "claim_version": 0,
        "measured_throughput": 0,
        "required_throughput": CLASS_FLOORS[CPU_DEV],
        "slashed": slashed,
        "epoch": market.epoch(),
    }
    assert market.stake_of(provider).free == stake - slashed
    assert market.claimable(stake_token, treasury) == slashed
    books()
