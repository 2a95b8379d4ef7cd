"""escrow.settle: a quorum-signed JobReport pays, refunds and slashes a running job."""

from __future__ import annotations

from dataclasses import dataclass

import ape
import pytest

from gpumarket.signing.eip712 import Outcome
from helpers.constants import (
    CANCELLED,
    COMPLETED,
    CPU_DEV,
    EXPIRED,
    FAILED,
    HOUR,
    OPEN,
    RUNNING,
)
from unit.expectations import ceil_bps, emitted

# A job whose numbers make every rounding visible: the provider charges 7 per GPU-second
# for 2 GPUs, the client allows up to 10 for one hour.
PROVIDER_PRICE = 7
GPUS = 2
MAX_PRICE = 10
DURATION = HOUR
CAP = GPUS * DURATION  # billable GPU-seconds


@dataclass(frozen=True)
class Running:
    job_id: int
    escrow: int
    collateral: int
    free_before_accept: int


@pytest.fixture
def running(market, client, provider, ready_provider, create_job) -> Running:
    ready_provider(provider, gpu_count=GPUS, price=PROVIDER_PRICE)
    free_before_accept = market.stake_of(provider).free
    job_id = create_job(client, gpu_count=GPUS, max_price=MAX_PRICE, max_duration=DURATION)
    market.accept_job(job_id, sender=provider)
    job = market.get_job(job_id)
    assert job.state == RUNNING
    return Running(job_id, job.escrow, job.collateral, free_before_accept)


@pytest.fixture
def submit(market, keeper, signed_job_report):
    """Signs and submits a report for `job_id` naming `provider`."""

    def call(job_id: int, provider, outcome=Outcome.COMPLETED, gpu_seconds: int = 0, signers: int | None = None):
        report, signatures = signed_job_report(job_id, provider, outcome, gpu_seconds, signers)
        return market.settle(report, signatures, sender=keeper)

    return call


def settled_log(
    job_id: int, provider, outcome: int, gpu_seconds: int, payment: int, fee: int, refund: int, slashed: int
) -> dict:
    """JobSettled as the protocol defines it; the test reports carry these two hashes."""
    return {
        "job_id": job_id,
        "provider": provider,
        "outcome": outcome,
        "gpu_seconds": gpu_seconds,
        "provider_payment": payment - fee,
        "protocol_fee": fee,
        "client_refund": refund,
        "slashed": slashed,
        "result_hash": b"\x11" * 32,
        "evidence_hash": b"\x22" * 32,
    }


# ----------------------------------------------------------------------------- checks


@pytest.mark.parametrize(
    "state",
    [0, OPEN, COMPLETED, FAILED, CANCELLED, EXPIRED],
    ids=["unknown-id", "open", "settled-twice-completed", "settled-twice-failed", "cancelled", "expired"],
)
def test_job_not_running_reverts(provider, job_in_state, submit, state: int):
    job_id = job_in_state(state)
    with ape.reverts("escrow: job not running"):
        submit(job_id, provider)


def test_report_naming_another_provider_reverts(provider2, running: Running, submit):
    with ape.reverts("escrow: wrong provider"):
        submit(running.job_id, provider2)


@pytest.mark.parametrize("outcome", [0, 3])
def test_unknown_outcome_reverts(
    market, keeper, provider, committee, domain, running: Running, signed_job_report, outcome: int
):
    report, _ = signed_job_report(running.job_id, provider)
    # The off-chain JobReport refuses other outcomes; bypass it to sign what a buggy or
    # malicious committee could sign, so that only the outcome check can refuse it.
    object.__setattr__(report, "outcome", outcome)
    with ape.reverts("escrow: unknown outcome"):
        market.settle(report, committee.sign(domain, report), sender=keeper)


def test_report_short_of_quorum_reverts(provider, running: Running, submit):
    # Quorum rules are tested in tests/security; one is enough to show settle enforces them.
    with ape.reverts("committee: not enough signatures"):
        submit(running.job_id, provider, signers=1)


# ----------------------------------------------------------------------------- COMPLETED


@pytest.mark.parametrize(
    "gpu_seconds",
    [0, 1_801, CAP, CAP + 1, 10**30],
    ids=["zero", "part", "exactly-the-cap", "one-above-the-cap", "far-above-the-cap"],
)
def test_completed_pays_provider_and_treasury_and_refunds_the_rest(
    market, payment_token, client, provider, treasury, running: Running, submit, books, gpu_seconds: int
):
    billed = min(gpu_seconds, CAP)
    payment = PROVIDER_PRICE * billed
    fee = ceil_bps(payment, market.protocol_fee_bps())
    refund = running.escrow - payment

    tx = submit(running.job_id, provider, Outcome.COMPLETED, gpu_seconds)

    assert emitted(tx, market.JobSettled) == [
        settled_log(running.job_id, provider, Outcome.COMPLETED, billed, payment, fee, refund, 0)
    ]
    assert emitted(tx, market.Slashed) == []
    assert market.claimable(payment_token, provider) == payment - fee
    assert market.claimable(payment_token, treasury) == fee
    assert market.claimable(payment_token, client) == refund
    assert market.get_job(running.job_id).state == COMPLETED
    books()


def test_zero_gpu_seconds_refunds_the_whole_escrow(
    market, payment_token, client, provider, treasury, running: Running, submit
):
    submit(running.job_id, provider, Outcome.COMPLETED, 0)
    assert market.claimable(payment_token, client) == running.escrow
    assert market.claimable(payment_token, provider) == 0
    assert market.claimable(payment_token, treasury) == 0


def test_protocol_fee_rounds_up(market, payment_token, provider, treasury, running: Running, submit):
    # 1,801 GPU-seconds at 7 is 12,607; 2.5% of it is 315.175, so the treasury gets 316.
    submit(running.job_id, provider, Outcome.COMPLETED, 1_801)
    assert market.claimable(payment_token, treasury) == 316
    assert market.claimable(payment_token, provider) == 12_607 - 316


def test_completed_unlocks_the_whole_collateral(market, provider, running: Running, submit):
    submit(running.job_id, provider, Outcome.COMPLETED, CAP)
    stake = market.stake_of(provider)
    assert (stake.free, stake.locked) == (running.free_before_accept, 0)


# ----------------------------------------------------------------------------- FAILED


@pytest.mark.parametrize(
    "slash_bps, client_share_bps",
    [(10_000, 5_000), (3_333, 3_333), (1, 0), (1, 10_000)],
    ids=["defaults", "odd-shares", "tiny-slash-no-client-share", "tiny-slash-all-to-client"],
)
def test_failed_refunds_client_and_slashes_collateral(
    market,
    owner,
    stake_token,
    payment_token,
    client,
    provider,
    treasury,
    running: Running,
    submit,
    books,
    slash_bps: int,
    client_share_bps: int,
):
    market.set_slash_bps(slash_bps, sender=owner)
    market.set_client_share_bps(client_share_bps, sender=owner)
    slashed = ceil_bps(running.collateral, slash_bps)
    client_share = ceil_bps(slashed, client_share_bps)

    # gpu_seconds in a FAILED report bill nothing.
    tx = submit(running.job_id, provider, Outcome.FAILED, 500)

    assert emitted(tx, market.JobSettled) == [
        settled_log(running.job_id, provider, Outcome.FAILED, 0, 0, 0, running.escrow, slashed)
    ]
    assert emitted(tx, market.Slashed) == [
        {"provider": provider, "amount": slashed, "beneficiary": client, "beneficiary_share": client_share}
    ]
    assert market.claimable(payment_token, client) == running.escrow
    assert market.claimable(payment_token, provider) == 0
    assert market.claimable(stake_token, client) == client_share
    assert market.claimable(stake_token, treasury) == slashed - client_share
    stake = market.stake_of(provider)
    assert (stake.free, stake.locked) == (running.free_before_accept - slashed, 0)
    assert market.get_job(running.job_id).state == FAILED
    books()


def test_slash_never_rounds_to_zero(
    market, owner, stake_token, client, provider, treasury, ready_provider, create_job, submit
):
    # Value 7 * 3 * 11 = 231, collateral ceil(46.2) = 47; 0.01% of it is 0.0047, slashed as 1,
    # and half of that 1 goes to the client, rounded up: 1.
    ready_provider(provider, gpu_count=3, price=7)
    job_id = create_job(client, gpu_count=3, max_price=7, max_duration=11)
    market.accept_job(job_id, sender=provider)
    market.set_slash_bps(1, sender=owner)

    tx = submit(job_id, provider, Outcome.FAILED)

    assert emitted(tx, market.JobSettled)[0]["slashed"] == 1
    assert market.claimable(stake_token, client) == 1
    assert market.claimable(stake_token, treasury) == 0


def test_failures_in_the_window_jail_at_the_threshold(market, client, provider, running_job, settle, books):
    threshold = market.jail_after_failures()
    for failures in range(1, threshold + 1):
        tx = settle(running_job(client, provider), Outcome.FAILED)
        record = market.providers(provider)
        assert record.recent_failures == failures
        if failures < threshold:
            assert emitted(tx, market.ProviderJailed) == []
            assert not record.jailed
        else:
            assert emitted(tx, market.ProviderJailed) == [{"provider": provider, "recent_failures": threshold}]
            assert record.jailed
    books()


def test_completed_job_leaves_the_failure_count(market, client, provider, running_job, settle):
    # Before issue 9 a completed job reset the count; now only the failure window does
    # (tests/unit/registry/test_failure_window.py), so a completed job cannot wash failures.
    threshold = market.jail_after_failures()
    for _ in range(threshold - 1):
        settle(running_job(client, provider), Outcome.FAILED)
    window_start = market.providers(provider).failure_window_start
    settle(running_job(client, provider), Outcome.COMPLETED, gpu_seconds=1)
    record = market.providers(provider)
    assert (record.recent_failures, record.failure_window_start) == (threshold - 1, window_start)

    # With the old reset this failure would have counted 1; it reaches the threshold.
    tx = settle(running_job(client, provider), Outcome.FAILED)
    assert market.providers(provider).recent_failures == threshold
    assert emitted(tx, market.ProviderJailed) == [{"provider": provider, "recent_failures": threshold}]
    assert market.providers(provider).jailed


@pytest.mark.parametrize("outcome", [Outcome.COMPLETED, Outcome.FAILED], ids=["completed", "failed"])
def test_settle_frees_the_jobs_gpus(market, provider, running: Running, submit, outcome):
    assert market.gpus_in_use(provider) == GPUS
    submit(running.job_id, provider, outcome, 1)
    assert market.gpus_in_use(provider) == 0


# ----------------------------------------------------------------------------- always open


def test_settle_works_while_paused(market, owner, provider, running: Running, submit, books):
    market.pause(sender=owner)
    submit(running.job_id, provider, Outcome.COMPLETED, 1)
    assert market.get_job(running.job_id).state == COMPLETED
    books()


def test_settle_works_after_the_class_is_removed(market, owner, provider, running: Running, submit):
    market.set_gpu_class(CPU_DEV, 0, sender=owner)
    submit(running.job_id, provider, Outcome.FAILED)
    assert market.get_job(running.job_id).state == FAILED
