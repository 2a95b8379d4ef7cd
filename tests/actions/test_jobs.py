"""gpumarket.actions.jobs on the embedded chain: create's checks (terms, directed provider,
balance, allowance), cancel's (ownership, state), status and claim."""

from __future__ import annotations

import pytest

from gpumarket.actions import ActionError, NeedsApproval, jobs
from gpumarket.chain.models import JobState
from gpumarket.signing.eip712 import Outcome

from .conftest import CPU_DEV, PRICE, SPEC
from .test_provider import refused

DURATION = 600


def create(world, key, **overrides):
    terms = {"gpu_class": CPU_DEV, "gpu_count": 1, "max_price": PRICE, "max_duration": DURATION, **overrides}
    return jobs.create(world.market(key), SPEC, **terms)


def test_create_checks_the_terms(world):
    client = world.new_key()
    world.mint(client, payment=10**24)
    market = world.market(client)
    terms = {"gpu_class": CPU_DEV, "gpu_count": 1, "max_price": PRICE, "max_duration": DURATION}
    refused("unknown_class", jobs.create, market, SPEC, **{**terms, "gpu_class": 77})
    refused("out_of_range", jobs.create, market, SPEC, **{**terms, "gpu_count": 0})
    refused("out_of_range", jobs.create, market, SPEC, **{**terms, "max_duration": 30 * 86_400 + 1})
    refused("out_of_range", jobs.create, market, SPEC, **{**terms, "max_price": 2**96})
    refused("out_of_range", jobs.create, market, SPEC, **terms, accept_window=0)
    refused("bad_address", jobs.create, market, SPEC, **terms, provider="not-an-address")


def test_create_refuses_a_provider_that_cannot_accept(world):
    client = world.new_key()
    world.mint(client, payment=10**24)
    market = world.market(client)
    stranger = world.new_key()
    refused("not_registered", jobs.create, market, SPEC, gpu_class=CPU_DEV, gpu_count=1, max_price=PRICE,
            max_duration=DURATION, provider=stranger.address)
    unverified = world.new_key()
    world.market(unverified).register(CPU_DEV, 1, PRICE, "http://127.0.0.1:9/u")
    error = refused("provider_unverified", jobs.create, market, SPEC, gpu_class=CPU_DEV, gpu_count=1,
                    max_price=PRICE, max_duration=DURATION, provider=unverified.address)
    assert "open job" in error.hint
    ready = world.ready_provider(price=2 * PRICE)
    refused("price_above_max", jobs.create, market, SPEC, gpu_class=CPU_DEV, gpu_count=1, max_price=PRICE,
            max_duration=DURATION, provider=ready.address)
    refused("not_enough_gpus", jobs.create, market, SPEC, gpu_class=CPU_DEV, gpu_count=2, max_price=2 * PRICE,
            max_duration=DURATION, provider=ready.address)
    refused("wrong_class", jobs.create, market, SPEC, gpu_class=2, gpu_count=1, max_price=2 * PRICE,
            max_duration=DURATION, provider=ready.address)


def test_create_needs_the_escrow_and_its_allowance(world):
    client = world.new_key()
    market = world.market(client)
    escrow = PRICE * 2 * DURATION
    error = refused("insufficient_balance", jobs.create, market, SPEC, gpu_class=CPU_DEV, gpu_count=2,
                    max_price=PRICE, max_duration=DURATION)
    assert f"({escrow} base units)" in error.message
    world.mint(client, payment=escrow)
    missing = refused("needs_approval", jobs.create, market, SPEC, gpu_class=CPU_DEV, gpu_count=2, max_price=PRICE,
                      max_duration=DURATION)
    assert isinstance(missing, NeedsApproval) and missing.amount == escrow
    assert missing.token == market.payment_token.address

    result = create(world, client, gpu_count=2, approve=True)
    assert [tx.label for tx in result.transactions] == ["approve", "create_job"]
    job = market.get_job(result.details["job_id"])
    assert (job.state, job.client, job.escrow, job.spec_hash) == (JobState.OPEN, client.address, escrow, SPEC.hash())
    assert market.payment_token.balance_of(client.address) == 0
    assert result.transactions[-1].gas_used > 0
    assert result.to_json()["escrow"] == str(escrow)


def test_cancel_checks_owner_and_state_then_refunds(world):
    client = world.new_key()
    world.mint(client, payment=10**24)
    market = world.market(client)
    refused("no_such_job", jobs.cancel, market, 10**6)
    job_id = create(world, client, approve=True).details["job_id"]
    refused("not_client", jobs.cancel, world.market(world.new_key()), job_id)

    result = jobs.cancel(market, job_id)
    escrow = PRICE * DURATION
    assert result.details["refund"] == escrow
    assert market.get_job(job_id).state == JobState.CANCELLED
    error = refused("job_not_open", jobs.cancel, market, job_id)
    assert "claim" in error.hint

    before = market.payment_token.balance_of(client.address)
    claimed = jobs.claim(market)
    assert claimed.details["claimed"][market.payment_token.address] == escrow
    assert market.payment_token.balance_of(client.address) == before + escrow
    again = jobs.claim(market)
    assert again.transactions == () and again.summary == "nothing to claim"


def test_a_running_job_cannot_be_cancelled_and_its_status_follows_it(world):
    provider = world.ready_provider()
    client = world.new_key()
    world.mint(client, payment=10**24)
    market = world.market(client)
    job_id = create(world, client, provider=provider.address, approve=True).details["job_id"]
    status = jobs.status(world.market(), job_id)
    assert status.job.state == JobState.OPEN and "waiting for a provider" in status.next_step()
    assert status.expirable_at == status.job.accept_deadline + 1

    world.market(provider).accept_job(job_id)
    error = refused("job_not_open", jobs.cancel, market, job_id)
    assert "running job cannot be cancelled" in error.hint
    status = jobs.status(market, job_id)
    grace = market.parameters()["settle_grace"]
    assert status.expirable_at == status.job.started_at + DURATION + grace + 1

    world.settle(job_id, provider.address, Outcome.COMPLETED, gpu_seconds=100)
    status = jobs.status(market, job_id, from_block=world.deployment.block)
    assert status.job.state == JobState.COMPLETED
    settled = status.settlement
    assert settled is not None and settled.gpu_seconds == 100
    assert settled.client_refund == PRICE * DURATION - 100 * PRICE  # the unused paid time comes back
    document = status.to_json()
    assert document["settlement"]["outcome"] == "COMPLETED"
    assert document["settlement"]["client_refund"] == str(settled.client_refund)
    assert "COMPLETED, 100 GPU-seconds" in status.render()

    provider_claim = jobs.claim(world.market(provider))
    assert provider_claim.details["claimed"][market.payment_token.address] == settled.provider_payment


def test_a_paused_market_takes_no_new_jobs(world):
    client = world.new_key()
    world.mint(client, payment=10**24)
    owner = world.market(world.owner)
    owner.pause()
    try:
        refused("paused", jobs.create, world.market(client), SPEC, gpu_class=CPU_DEV, gpu_count=1, max_price=PRICE,
                max_duration=DURATION, approve=True)
    finally:
        owner.unpause()


def test_status_of_an_unknown_job(world):
    with pytest.raises(ActionError) as caught:
        jobs.status(world.market(), 424242)
    assert caught.value.code == "no_such_job"
