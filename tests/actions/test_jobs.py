"""gpumarket.actions.jobs on the embedded chain: create's checks (terms, directed provider and
its agent, balance, allowance), cancel's (ownership, state), expire's (the chain's clock),
send_spec's (client, spec hash, state), status, the client's job list with what to do next,
and claim."""

from __future__ import annotations

import sys

import pytest

from gpumarket.actions import ActionError, NeedsApproval, jobs
from gpumarket.agentapi.client import HttpTimeouts
from gpumarket.agentapi.spec import JobSpec
from gpumarket.chain.connection import advance_time
from gpumarket.chain.models import JobState
from gpumarket.client.jobs import AgentAnswer
from gpumarket.signing.eip712 import Outcome

from .conftest import CPU_DEV, PRICE, SPEC
from .test_provider import refused

FAST = HttpTimeouts(1.0, 1.0)

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
    refused(
        "not_registered",
        jobs.create,
        market,
        SPEC,
        gpu_class=CPU_DEV,
        gpu_count=1,
        max_price=PRICE,
        max_duration=DURATION,
        provider=stranger.address,
    )
    unverified = world.new_key()
    world.market(unverified).register(CPU_DEV, 1, PRICE, "http://127.0.0.1:9/u")
    error = refused(
        "provider_unverified",
        jobs.create,
        market,
        SPEC,
        gpu_class=CPU_DEV,
        gpu_count=1,
        max_price=PRICE,
        max_duration=DURATION,
        provider=unverified.address,
    )
    assert "open job" in error.hint
    ready = world.ready_provider(price=2 * PRICE)
    refused(
        "price_above_max",
        jobs.create,
        market,
        SPEC,
        gpu_class=CPU_DEV,
        gpu_count=1,
        max_price=PRICE,
        max_duration=DURATION,
        provider=ready.address,
    )
    refused(
        "not_enough_gpus",
        jobs.create,
        market,
        SPEC,
        gpu_class=CPU_DEV,
        gpu_count=2,
        max_price=2 * PRICE,
        max_duration=DURATION,
        provider=ready.address,
    )
    refused(
        "wrong_class",
        jobs.create,
        market,
        SPEC,
        gpu_class=2,
        gpu_count=1,
        max_price=2 * PRICE,
        max_duration=DURATION,
        provider=ready.address,
    )
    # Its one GPU runs a job: the chain would refuse the accept until that job ends.
    running = create(
        world,
        client,
        gpu_class=CPU_DEV,
        gpu_count=1,
        max_price=2 * PRICE,
        max_duration=DURATION,
        provider=ready.address,
        approve=True,
        agent_timeouts=None,
    ).details["job_id"]
    world.market(ready).accept_job(running)
    error = refused(
        "provider_busy",
        jobs.create,
        market,
        SPEC,
        gpu_class=CPU_DEV,
        gpu_count=1,
        max_price=2 * PRICE,
        max_duration=DURATION,
        provider=ready.address,
    )
    assert "hold 1 of its 1 GPU(s)" in error.message and "retry once its running jobs end" in error.hint


def test_create_needs_the_escrow_and_its_allowance(world):
    client = world.new_key()
    market = world.market(client)
    escrow = PRICE * 2 * DURATION
    error = refused(
        "insufficient_balance",
        jobs.create,
        market,
        SPEC,
        gpu_class=CPU_DEV,
        gpu_count=2,
        max_price=PRICE,
        max_duration=DURATION,
    )
    assert f"({escrow} base units)" in error.message
    world.mint(client, payment=escrow)
    missing = refused(
        "needs_approval",
        jobs.create,
        market,
        SPEC,
        gpu_class=CPU_DEV,
        gpu_count=2,
        max_price=PRICE,
        max_duration=DURATION,
    )
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
    job_id = create(world, client, provider=provider.address, approve=True, agent_timeouts=None).details["job_id"]
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
        refused(
            "paused",
            jobs.create,
            world.market(client),
            SPEC,
            gpu_class=CPU_DEV,
            gpu_count=1,
            max_price=PRICE,
            max_duration=DURATION,
            approve=True,
        )
    finally:
        owner.unpause()


def test_status_of_an_unknown_job(world):
    with pytest.raises(ActionError) as caught:
        jobs.status(world.market(), 424242)
    assert caught.value.code == "no_such_job"


def test_a_directed_job_needs_an_agent_that_answers_with_the_gpus_free(world, fake_agent):
    """The chain cannot tell whether the provider's agent runs or has its GPUs held: asked first,
    a job it cannot start now is refused before anything is sent."""
    client = world.new_key()
    world.mint(client, payment=10**24)
    market = world.market(client)
    terms = {
        "gpu_class": CPU_DEV,
        "gpu_count": 1,
        "max_price": PRICE,
        "max_duration": DURATION,
        "approve": True,
        "agent_timeouts": FAST,
    }
    down = world.ready_provider()  # its endpoint is port 9: nothing listens
    error = refused("agent_down", jobs.create, market, SPEC, provider=down.address, **terms)
    assert "127.0.0.1:9" in error.message and "open job" in error.hint

    ready = world.ready_provider(endpoint=fake_agent.url)
    fake_agent.serve(ready.address, gpus=1, free=0)  # its only GPU is held by a job
    error = refused("agent_busy", jobs.create, market, SPEC, provider=ready.address, **terms)
    assert "0 of 1 GPU(s) free" in error.message and "retry once its running jobs end" in error.hint
    fake_agent.serve(world.new_key(ether=0).address, gpus=1, free=1)  # someone else's agent at that endpoint
    refused("agent_mismatch", jobs.create, market, SPEC, provider=ready.address, **terms)
    fake_agent.health = {"status": "ok"}  # not what an agent answers
    refused("agent_down", jobs.create, market, SPEC, provider=ready.address, **terms)

    fake_agent.serve(ready.address, gpus=0, free=0)  # a CPU machine runs any number of jobs
    assert (
        market.get_job(create(world, client, provider=ready.address, **terms).details["job_id"]).state == JobState.OPEN
    )
    fake_agent.serve(ready.address, gpus=2, free=1)
    assert create(world, client, provider=ready.address, **terms).details["provider"] == ready.address
    # An open job asks no agent.
    assert create(world, client, approve=True).details["provider"] is None


def test_expire_waits_for_the_chains_clock_then_refunds(world):
    client = world.new_key()
    world.mint(client, payment=10**24)
    market = world.market(client)
    job_id = create(world, client, approve=True, accept_window=600).details["job_id"]
    error = refused("not_expirable_yet", jobs.expire, market, job_id)
    assert "to go" in error.message and "its accept deadline" in error.message
    assert "mined" in error.hint and error.details["job_id"] == job_id
    assert error.to_json()["job_id"] == job_id

    advance_time(world.w3, 601)
    result = jobs.expire(world.market(world.new_key()), job_id)  # anyone may
    assert result.details["refund"] == PRICE * DURATION and result.details["client"] == client.address
    assert market.get_job(job_id).state == JobState.EXPIRED
    refused("job_not_expirable", jobs.expire, market, job_id)
    refused("no_such_job", jobs.expire, market, 10**6)


def test_a_running_job_expires_after_its_paid_time_and_the_grace(world):
    provider = world.ready_provider()
    client = world.new_key()
    world.mint(client, payment=10**24)
    market = world.market(client)
    job_id = create(
        world, client, provider=provider.address, approve=True, agent_timeouts=None, max_duration=60
    ).details["job_id"]
    world.market(provider).accept_job(job_id)
    error = refused("not_expirable_yet", jobs.expire, market, job_id)
    assert "paid time and the settle grace" in error.message
    grace = market.parameters()["settle_grace"]
    advance_time(world.w3, 60 + grace + 1)
    status = jobs.status(market, job_id)
    assert "--expire" in status.next_step() and status.now >= status.expirable_at
    assert jobs.expire(market, job_id).details["collateral_released"] > 0


def test_send_spec_checks_the_client_the_spec_and_the_state(world):
    provider = world.ready_provider()
    client = world.new_key()
    world.mint(client, payment=10**24)
    market = world.market(client)
    job_id = create(world, client, provider=provider.address, approve=True, agent_timeouts=None).details["job_id"]
    other = JobSpec(command=[sys.executable, "-c", "print(2)"], limits=SPEC.limits)
    error = refused("spec_mismatch", jobs.send_spec, market, job_id, other)
    assert SPEC.hash().hex() in error.message and other.hash().hex() in error.message
    refused("not_client", jobs.send_spec, world.market(world.new_key()), job_id, SPEC)
    error = refused("job_not_accepted", jobs.send_spec, market, job_id, SPEC)
    assert f"send-spec {job_id}" in error.hint and "--wait" in error.hint
    assert jobs.check_spec(market, job_id, SPEC, open_ok=True).state == JobState.OPEN

    world.market(provider).accept_job(job_id)
    sent = refused("provider_unreachable", jobs.send_spec, market, job_id, SPEC, timeouts=FAST)
    assert "127.0.0.1:9" in sent.message and sent.hint
    world.settle(job_id, provider.address, Outcome.COMPLETED, gpu_seconds=1)
    error = refused("job_over", jobs.send_spec, market, job_id, SPEC)
    assert f"result {job_id}" in error.hint


def test_the_client_job_list_says_what_to_do_next(world, fake_agent):
    provider = world.ready_provider()
    client = world.new_key()
    world.mint(client, payment=10**24)
    market = world.market(client)
    open_id = create(world, client, approve=True).details["job_id"]
    running_id = create(world, client, provider=provider.address, approve=True, agent_timeouts=None).details["job_id"]
    world.market(provider).accept_job(running_id)
    cancelled_id = create(world, client, approve=True).details["job_id"]
    jobs.cancel(market, cancelled_id)
    other = world.new_key()
    world.mint(other, payment=10**24)
    create(world, other, approve=True)  # not this client's: not listed

    listing = jobs.list_jobs(market, from_block=world.deployment.block)
    assert listing.client == client.address
    by_id = {status.job.job_id: status for status in listing.jobs}
    assert {open_id, running_id, cancelled_id} <= set(by_id)
    assert all(status.job.client == client.address for status in listing.jobs)
    assert f"send-spec {open_id}" in by_id[open_id].next_step() and f"cancel {open_id}" in by_id[open_id].next_step()
    assert "claim" in by_id[cancelled_id].next_step()
    assert by_id[running_id].agent is None  # not asked
    assert [s.job.job_id for s in jobs.list_jobs(market, active_only=True).jobs if s.job.job_id == cancelled_id] == []
    text = listing.render()
    assert f"jobs of {client.address}" in text and "what to do next:" in text and "CANCELLED" in text
    assert listing.to_json()["jobs"][0]["next"]

    # Asked, the agent decides the next step of a running job.
    asked = jobs.list_jobs(market, client.address, agent_timeouts=FAST, active_only=True)
    running = next(status for status in asked.jobs if status.job.job_id == running_id)
    assert running.agent is not None and running.agent.code == "unreachable"
    assert "does not answer" in running.next_step()
    no_spec = jobs.JobStatus(
        running.job,
        running.now,
        running.settle_grace,
        running.payment_token,
        None,
        AgentAnswer(None, "no job", "unknown_job"),
    )
    assert f"send-spec {running_id} --spec FILE" in no_spec.next_step()
    accepted = jobs.JobStatus(
        running.job, running.now, running.settle_grace, running.payment_token, None, AgentAnswer({"state": "accepted"})
    )
    assert "send-spec" in accepted.next_step() and accepted.agent.has_spec is False
    finished = jobs.JobStatus(
        running.job,
        running.now,
        running.settle_grace,
        running.payment_token,
        None,
        AgentAnswer({"state": "finished", "exit_code": 127}),
    )
    assert f"result {running_id} --out DIR" in finished.next_step()
    assert "finished, command exit status 127" in finished.render()

    # Another client's view: its own jobs only.
    assert jobs.list_jobs(world.market(), world.new_key(ether=0).address).jobs == ()
