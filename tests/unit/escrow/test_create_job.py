"""escrow.create_job: validates the terms, escrows max_price * gpu_count * max_duration, opens the job."""

from __future__ import annotations

import ape
import pytest

from helpers.constants import CPU_DEV, DAY, H100, HOUR, OPEN, PRICE
from unit.expectations import ZERO_ADDRESS, emitted, next_tx_at

SPEC_HASH = b"\x5e" * 32
MAX_GPUS = 1_024
MAX_PRICE = 2**96 - 1  # prices are packed into 96 bits
MAX_DURATION = 30 * DAY
MAX_ACCEPT_WINDOW = 30 * DAY


@pytest.fixture
def create(market, chain, client, funded):
    """Calls create_job with valid terms, overridden by keyword; `accept_in` is seconds from now."""

    def call(sender=None, accept_in: int = HOUR, **overrides):
        now = next_tx_at(chain)  # the deadline bounds are relative to the block time
        terms = dict(
            gpu_class=CPU_DEV,
            gpu_count=2,
            max_price=3 * PRICE,
            max_duration=HOUR,
            spec_hash=SPEC_HASH,
            provider=ZERO_ADDRESS,
            accept_deadline=now + accept_in,
        )
        terms.update(overrides)
        return market.create_job(*terms.values(), sender=sender or client)

    return call


def test_paused_market_reverts(market, owner, create):
    market.pause(sender=owner)
    with ape.reverts("pausable: contract is paused"):
        create()


@pytest.mark.parametrize("gpu_class", [0, 99], ids=["class-zero", "class-never-listed"])
def test_unknown_class_reverts(create, gpu_class: int):
    with ape.reverts("governance: unknown gpu class"):
        create(gpu_class=gpu_class)


def test_class_removed_by_governance_reverts(market, owner, create):
    market.set_gpu_class(H100, 0, sender=owner)
    with ape.reverts("governance: unknown gpu class"):
        create(gpu_class=H100)


@pytest.mark.parametrize("gpu_count", [0, MAX_GPUS + 1])
def test_gpu_count_out_of_range_reverts(create, gpu_count: int):
    with ape.reverts("escrow: gpu count out of range"):
        create(gpu_count=gpu_count)


@pytest.mark.parametrize("max_price", [0, MAX_PRICE + 1])
def test_price_out_of_range_reverts(create, max_price: int):
    with ape.reverts("escrow: price out of range"):
        create(max_price=max_price)


@pytest.mark.parametrize("max_duration", [0, MAX_DURATION + 1])
def test_duration_out_of_range_reverts(create, max_duration: int):
    with ape.reverts("escrow: duration out of range"):
        create(max_duration=max_duration)


@pytest.mark.parametrize("accept_in", [0, -1, MAX_ACCEPT_WINDOW + 1], ids=["now", "past", "beyond-30-days"])
def test_accept_deadline_out_of_range_reverts(create, accept_in: int):
    with ape.reverts("escrow: deadline out of range"):
        create(accept_in=accept_in)


def test_empty_spec_hash_reverts(create):
    with ape.reverts("escrow: empty spec hash"):
        create(spec_hash=b"\x00" * 32)


def test_directed_to_unregistered_provider_reverts(create, provider):
    with ape.reverts("registry: not registered"):
        create(provider=provider)


@pytest.mark.parametrize(
    "terms",
    [
        dict(gpu_count=1, max_price=1, max_duration=1, accept_in=1),
        dict(gpu_count=MAX_GPUS, max_price=MAX_PRICE, max_duration=MAX_DURATION, accept_in=MAX_ACCEPT_WINDOW),
    ],
    ids=["lowest-bounds", "highest-bounds"],
)
def test_terms_at_their_bounds_are_accepted(market, payment_token, client, create, terms: dict):
    escrow = terms["max_price"] * terms["gpu_count"] * terms["max_duration"]
    payment_token.mint(client, escrow, sender=client)

    create(**terms)

    job = market.get_job(market.job_count())
    assert (job.state, job.gpu_count, job.max_price_per_gpu_second, job.max_duration) == (
        OPEN,
        terms["gpu_count"],
        terms["max_price"],
        terms["max_duration"],
    )
    assert job.escrow == escrow


def test_escrow_is_pulled_exactly_and_the_job_logged(market, payment_token, client, create, books):
    wallet_before = payment_token.balanceOf(client)
    market_before = payment_token.balanceOf(market)
    escrow = 3 * PRICE * 2 * HOUR  # max_price * gpu_count * max_duration

    tx = create()
    deadline = tx.timestamp + HOUR

    assert tx.return_value == 1
    assert payment_token.balanceOf(client) == wallet_before - escrow
    assert payment_token.balanceOf(market) == market_before + escrow
    assert emitted(tx, market.JobCreated) == [
        {
            "job_id": 1,
            "client": client,
            "provider": ZERO_ADDRESS,
            "gpu_class": CPU_DEV,
            "gpu_count": 2,
            "max_price_per_gpu_second": 3 * PRICE,
            "max_duration": HOUR,
            "accept_deadline": deadline,
            "escrow": escrow,
            "spec_hash": SPEC_HASH,
        }
    ]
    books()


def test_job_ids_count_up_from_one(market, client, client2, create):
    assert market.job_count() == 0
    ids = [create(sender=sender).return_value for sender in (client, client2, client)]
    assert ids == [1, 2, 3]
    assert market.job_count() == 3


def test_directed_job_names_its_provider(market, provider, register, create):
    register(provider)
    tx = create(provider=provider)
    assert emitted(tx, market.JobCreated)[0]["provider"] == provider
    assert market.get_job(tx.return_value).provider == provider


def test_missing_allowance_reverts(market, payment_token, client, create):
    payment_token.approve(market, 0, sender=client)
    with ape.reverts("token_io: transfer reverted"):
        create()
