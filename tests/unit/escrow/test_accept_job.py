"""escrow.accept_job: an eligible provider takes an open job and locks collateral from free stake."""

from __future__ import annotations

import ape
import pytest

from gpumarket.signing.eip712 import Outcome
from helpers.constants import CANCELLED, DAY, H100, HOUR, MIN_STAKE, OPEN, PRICE, RUNNING
from unit.expectations import emitted, next_tx_at


def test_paused_market_reverts(market, owner, client, provider, ready_provider, create_job):
    ready_provider(provider)
    job_id = create_job(client)
    market.pause(sender=owner)
    with ape.reverts("pausable: contract is paused"):
        market.accept_job(job_id, sender=provider)


@pytest.mark.parametrize("state", [0, RUNNING, CANCELLED], ids=["unknown-id", "already-running", "cancelled"])
def test_job_not_open_reverts(market, provider2, ready_provider, job_in_state, state: int):
    job_id = job_in_state(state)
    ready_provider(provider2)
    with ape.reverts("escrow: job not open"):
        market.accept_job(job_id, sender=provider2)


def test_deadline_is_inclusive(market, chain, client, provider, ready_provider, create_job):
    ready_provider(provider)
    job_id = create_job(client, accept_window=HOUR)
    deadline = market.get_job(job_id).accept_deadline

    next_tx_at(chain, deadline + 1)
    with ape.reverts("escrow: accept deadline passed"):
        market.accept_job(job_id, sender=provider)

    next_tx_at(chain, deadline)
    market.accept_job(job_id, sender=provider)
    assert market.get_job(job_id).state == RUNNING


def test_job_directed_to_another_provider_reverts(market, client, provider, provider2, ready_provider, create_job):
    ready_provider(provider)
    ready_provider(provider2)
    job_id = create_job(client, provider=provider)

    with ape.reverts("escrow: job directed elsewhere"):
        market.accept_job(job_id, sender=provider2)
    market.accept_job(job_id, sender=provider)
    assert market.get_job(job_id).provider == provider


def test_unregistered_caller_reverts(market, client, attacker, create_job):
    job_id = create_job(client)
    with ape.reverts("registry: not registered"):
        market.accept_job(job_id, sender=attacker)


def test_jailed_provider_reverts(market, owner, client, provider, running_job, create_job, settle):
    market.set_jail_after_failures(1, sender=owner)
    settle(running_job(client, provider), Outcome.FAILED)
    assert market.providers(provider).jailed
    job_id = create_job(client)
    with ape.reverts("registry: provider jailed"):
        market.accept_job(job_id, sender=provider)


@pytest.mark.parametrize(
    "job_terms, reason",
    [
        (dict(gpu_class=H100), "registry: wrong gpu class"),
        # A job bigger than the provider's whole claim does not fit either.
        (dict(gpu_count=2), "registry: not enough free gpus"),
        (dict(max_price=PRICE - 1), "registry: price above job max"),
    ],
    ids=["wrong-class", "not-enough-gpus", "price-above-max"],
)
def test_provider_that_cannot_serve_the_job_reverts(
    market, client, provider, ready_provider, create_job, job_terms: dict, reason: str
):
    ready_provider(provider)  # one cpu-dev GPU at PRICE
    job_id = create_job(client, **job_terms)
    with ape.reverts(reason):
        market.accept_job(job_id, sender=provider)


def test_one_gpu_provider_cannot_take_a_second_job(market, client, client2, provider, ready_provider, create_job):
    ready_provider(provider)  # one GPU
    first, second = create_job(client), create_job(client2)
    market.accept_job(first, sender=provider)
    with ape.reverts("registry: not enough free gpus"):
        market.accept_job(second, sender=provider)
    assert market.get_job(second).state == OPEN
    assert market.gpus_in_use(provider) == 1


def test_two_gpu_provider_takes_two_one_gpu_jobs_then_refuses_a_third(
    market, client, provider, ready_provider, create_job, books
):
    ready_provider(provider, gpu_count=2)
    jobs = [create_job(client) for _ in range(3)]
    for job_id in jobs[:2]:
        market.accept_job(job_id, sender=provider)
    stake_before = market.stake_of(provider)
    with ape.reverts("registry: not enough free gpus"):
        market.accept_job(jobs[2], sender=provider)
    assert market.stake_of(provider) == stake_before  # no collateral locked for the refused job
    assert [market.get_job(job_id).state for job_id in jobs] == [RUNNING, RUNNING, OPEN]
    assert market.gpus_in_use(provider) == 2
    books()


@pytest.mark.parametrize(
    "running_gpus, job_gpus, fits",
    [(2, 2, True), (2, 3, False), (3, 2, False), (4, 1, False), (0, 4, True), (0, 5, False)],
)
def test_job_fits_only_in_the_free_gpus(
    market, client, provider, ready_provider, create_job, running_gpus: int, job_gpus: int, fits: bool
):
    ready_provider(provider, gpu_count=4)
    if running_gpus:
        market.accept_job(create_job(client, gpu_count=running_gpus), sender=provider)
    job_id = create_job(client, gpu_count=job_gpus)
    if fits:
        market.accept_job(job_id, sender=provider)
        assert market.gpus_in_use(provider) == running_gpus + job_gpus
    else:
        with ape.reverts("registry: not enough free gpus"):
            market.accept_job(job_id, sender=provider)
        assert market.gpus_in_use(provider) == running_gpus


@pytest.mark.parametrize("ending", ["completed", "failed", "expired"])
def test_gpus_freed_by_an_ended_job_take_the_next_one(
    market, chain, client, keeper, provider, ready_provider, create_job, settle, ending: str
):
    ready_provider(provider)  # one GPU
    first = create_job(client)
    market.accept_job(first, sender=provider)
    waiting = create_job(client, accept_window=2 * DAY)
    with ape.reverts("registry: not enough free gpus"):
        market.accept_job(waiting, sender=provider)
    if ending == "expired":
        job = market.get_job(first)
        next_tx_at(chain, job.started_at + job.max_duration + market.settle_grace() + 1)
        market.expire_job(first, sender=keeper)
        next_tx_at(chain, job.started_at + job.max_duration + market.settle_grace() + 2)
    else:
        settle(first, Outcome.COMPLETED if ending == "completed" else Outcome.FAILED)
    market.accept_job(waiting, sender=provider)
    assert market.get_job(waiting).state == RUNNING


def test_price_equal_to_the_maximum_is_accepted(market, client, provider, ready_provider, create_job):
    ready_provider(provider)
    job_id = create_job(client, max_price=PRICE)
    market.accept_job(job_id, sender=provider)
    assert market.get_job(job_id).price_per_gpu_second == PRICE


def test_never_verified_provider_reverts(market, client, provider, register, create_job):
    register(provider)
    market.stake(MIN_STAKE + 100 * PRICE, sender=provider)
    job_id = create_job(client)
    with ape.reverts("registry: hardware not verified"):
        market.accept_job(job_id, sender=provider)


def test_verification_expires_after_its_last_second(market, chain, client, provider, ready_provider, create_job):
    ready_provider(provider)  # verified for one day
    verified_until = market.providers(provider).verified_until

    job_id = create_job(client, accept_window=2 * DAY)

    next_tx_at(chain, verified_until + 1)
    with ape.reverts("registry: hardware not verified"):
        market.accept_job(job_id, sender=provider)
    next_tx_at(chain, verified_until)
    market.accept_job(job_id, sender=provider)
    assert market.get_job(job_id).state == RUNNING


RATE_SCALE = 10**18


def expected_collateral(market, price: int, gpu_count: int, max_duration: int) -> int:
    """Job value at the accepted price times COLLATERAL_BPS, converted to stake-token
    units by collateral_rate (1e18 = one to one), rounded up once at the end."""
    scaled = price * gpu_count * max_duration * market.collateral_bps() * market.collateral_rate()
    return -(-scaled // (10_000 * RATE_SCALE))


def test_free_stake_must_cover_min_stake_plus_collateral(market, client, provider, ready_provider, create_job):
    collateral = expected_collateral(market, PRICE, 1, HOUR)
    ready_provider(provider, extra=collateral - 1)
    job_id = create_job(client, max_duration=HOUR)

    with ape.reverts("staking: free stake too low"):
        market.accept_job(job_id, sender=provider)
    market.stake(1, sender=provider)
    market.accept_job(job_id, sender=provider)
    assert market.stake_of(provider).free == MIN_STAKE


def test_accept_locks_rounded_up_collateral_and_logs(
    market, chain, client, provider, ready_provider, create_job, books
):
    # 7 * 3 * 11 = 231 units of value; 20% of it is 46.2, so the collateral is 47.
    ready_provider(provider, gpu_count=3, price=7)
    job_id = create_job(client, gpu_count=3, max_price=10, max_duration=11)
    collateral = expected_collateral(market, 7, 3, 11)
    assert collateral == 47
    before = market.stake_of(provider)
    now = next_tx_at(chain)

    tx = market.accept_job(job_id, sender=provider)

    assert emitted(tx, market.JobAccepted) == [
        {"job_id": job_id, "provider": provider, "price_per_gpu_second": 7, "collateral": collateral, "started_at": now}
    ]
    after = market.stake_of(provider)
    assert (after.free, after.locked) == (before.free - collateral, before.locked + collateral)
    job = market.get_job(job_id)
    assert (job.state, job.provider, job.price_per_gpu_second, job.started_at, job.collateral) == (
        RUNNING,
        provider,
        7,
        now,
        collateral,
    )
    books()


def test_open_job_stays_open_for_others_until_taken(market, client, provider, provider2, ready_provider, create_job):
    ready_provider(provider)
    ready_provider(provider2)
    job_id = create_job(client)
    market.accept_job(job_id, sender=provider2)
    assert market.get_job(job_id).provider == provider2
    with ape.reverts("escrow: job not open"):
        market.accept_job(job_id, sender=provider)


@pytest.mark.parametrize(
    "rate",
    [RATE_SCALE, 10**12 * RATE_SCALE, RATE_SCALE // 3],
    ids=["par", "6-decimal-payment-vs-18-decimal-stake", "stake-worth-3x-payment"],
)
def test_collateral_rate_converts_job_value_to_stake_tokens(
    market, owner, client, provider, ready_provider, create_job, stake_token, rate: int
):
    market.set_collateral_rate(rate, sender=owner)
    collateral = expected_collateral(market, PRICE, 1, HOUR)
    stake_token.mint(provider, collateral, sender=provider)
    ready_provider(provider, extra=collateral)
    job_id = create_job(client, max_duration=HOUR)

    tx = market.accept_job(job_id, sender=provider)

    assert market.get_job(job_id).collateral == collateral
    assert market.stake_of(provider).locked == collateral
    assert emitted(tx, market.JobAccepted)[0]["collateral"] == collateral


@pytest.mark.parametrize("ending", ["settle", "expire"])
@pytest.mark.parametrize("change", ["set_collateral_bps", "set_collateral_rate"])
def test_job_keeps_the_collateral_it_was_accepted_with(
    market, owner, chain, client, provider, running_job, settle, books, ending: str, change: str
):
    job_id = running_job(client, provider)
    collateral = expected_collateral(market, PRICE, 1, HOUR)
    free_while_running = market.stake_of(provider).free

    getattr(market, change)(10_000 if change == "set_collateral_bps" else 3 * RATE_SCALE, sender=owner)
    assert market.get_job(job_id).collateral == collateral

    if ending == "settle":
        settle(job_id, Outcome.COMPLETED, gpu_seconds=HOUR)
    else:
        job = market.get_job(job_id)
        next_tx_at(chain, job.started_at + job.max_duration + market.settle_grace() + 1)
        market.expire_job(job_id, sender=client)

    stake = market.stake_of(provider)
    assert (stake.free, stake.locked) == (free_while_running + collateral, 0)
    books()


def test_accepting_does_not_move_payment_tokens(market, payment_token, client, provider, ready_provider, create_job):
    ready_provider(provider)
    job_id = create_job(client)
    held = payment_token.balanceOf(market)
    market.accept_job(job_id, sender=provider)
    assert payment_token.balanceOf(market) == held
    assert market.get_job(job_id).state != OPEN


def test_collateral_beyond_96_bits_reverts(market, owner, client, provider, ready_provider, create_job):
    # Collateral is packed into 96 bits beside the provider: an absurd rate cannot wrap it.
    market.set_collateral_rate(10**36, sender=owner)
    assert expected_collateral(market, PRICE, 1, HOUR) > 2**96 - 1
    ready_provider(provider)
    job_id = create_job(client, max_duration=HOUR)
    with ape.reverts("escrow: collateral too large"):
        market.accept_job(job_id, sender=provider)
