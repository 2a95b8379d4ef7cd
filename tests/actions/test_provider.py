"""gpumarket.actions.provider against a real market on the embedded chain: every action's
pre-checks (nothing is sent when one refuses) and its effect, and the status view."""

from __future__ import annotations

import re

import pytest

from gpumarket.actions import ActionError, NeedsApproval, approve, jobs, provider, render
from gpumarket.agentapi.client import HttpTimeouts
from gpumarket.chain.arithmetic import job_collateral
from gpumarket.chain.connection import advance_time, latest_timestamp
from gpumarket.chain.models import JobState

from .conftest import CPU_DEV, PRICE, SPEC

ENDPOINT = "http://127.0.0.1:9/agent"


def refused(code: str, action, *args, **kwargs) -> ActionError:
    """Run an action that must refuse with `code`, and check it sent nothing."""
    market = args[0]
    before = market.w3.eth.block_number
    with pytest.raises(ActionError) as caught:
        action(*args, **kwargs)
    assert caught.value.code == code, str(caught.value)
    assert caught.value.hint, "every refusal says what to do"
    assert market.w3.eth.block_number == before, "a refused action sent a transaction"
    return caught.value


def test_register_checks_the_claim_then_registers(world):
    key = world.new_key()
    market = world.market(key)
    refused("unknown_class", provider.register, market, 999, 1, PRICE, ENDPOINT)
    refused("out_of_range", provider.register, market, CPU_DEV, 0, PRICE, ENDPOINT)
    refused("out_of_range", provider.register, market, CPU_DEV, 1025, PRICE, ENDPOINT)
    refused("out_of_range", provider.register, market, CPU_DEV, 1, 2**96, ENDPOINT)
    refused("bad_endpoint", provider.register, market, CPU_DEV, 1, PRICE, "ftp://host/x")
    refused("bad_endpoint", provider.register, market, CPU_DEV, 1, PRICE, "http://h/" + "x" * 130)

    result = provider.register(market, CPU_DEV, 2, PRICE, ENDPOINT)
    record = market.providers(key.address)
    assert (record.gpu_class, record.gpu_count, record.price_per_gpu_second, record.endpoint) == (
        CPU_DEV,
        2,
        PRICE,
        ENDPOINT,
    )
    assert result.tx_hash and result.to_json()["tx_hash"] == result.tx_hash
    assert refused("already_registered", provider.register, market, CPU_DEV, 1, PRICE, ENDPOINT).hint.startswith(
        "use `update`"
    )


def test_update_keeps_what_is_not_given_and_says_when_verification_is_void(world):
    key = world.new_key()
    market = world.market(key)
    refused("not_registered", provider.update, market, price=PRICE)
    provider.register(market, CPU_DEV, 1, PRICE, ENDPOINT)
    world.verify(key)
    refused("no_change", provider.update, market, price=PRICE)

    result = provider.update(market, price=2 * PRICE)
    assert not result.details["voids_verification"]
    assert market.is_verified(key.address)
    assert market.providers(key.address).endpoint == ENDPOINT

    result = provider.update(market, gpu_count=2)
    assert result.details["voids_verification"] and "unverified" in result.summary
    assert not market.is_verified(key.address)
    assert market.providers(key.address).price_per_gpu_second == 2 * PRICE


def test_stake_needs_a_balance_then_an_allowance(world):
    key = world.new_key()
    market = world.market(key)
    amount = world.min_stake
    error = refused("insufficient_balance", provider.stake, market, amount)
    assert str(amount) in error.message
    world.mint(key, stake=amount + 5)
    missing = refused("needs_approval", provider.stake, market, amount)
    assert isinstance(missing, NeedsApproval)
    assert (missing.token, missing.spender, missing.amount, missing.allowance) == (
        market.stake_token.address,
        market.address,
        amount,
        0,
    )
    refused("bad_amount", provider.stake, market, 0)

    # The caller approves what the error names and retries.
    approve(market, missing.token, missing.amount)
    result = provider.stake(market, amount)
    assert result.approve_tx_hash is None
    assert market.stake_of(key.address).free == amount
    assert market.stake_token.balance_of(key.address) == 5


def test_stake_with_approve_approves_exactly_the_amount(world):
    key = world.new_key()
    market = world.market(key)
    world.mint(key, stake=10**22)
    result = provider.stake(market, 3 * 10**21, approve=True)
    assert [tx.label for tx in result.transactions] == ["approve", "stake"]
    assert market.stake_token.allowance(key.address, market.address) == 0  # nothing left over
    assert market.stake_of(key.address).free == 3 * 10**21
    assert result.to_json()["amount"] == str(3 * 10**21)


def test_no_ether_for_gas_is_refused_before_sending(world):
    key = world.new_key(ether=0)
    refused("no_gas", provider.register, world.market(key), CPU_DEV, 1, PRICE, ENDPOINT)


def test_unstake_and_withdraw_follow_the_release_time(world):
    key = world.new_key()
    market = world.market(key)
    staked = 2 * 10**21
    world.mint(key, stake=staked)
    provider.stake(market, staked, approve=True)
    refused("nothing_unbonding", provider.withdraw, market)
    refused("insufficient_free_stake", provider.request_unstake, market, staked + 1)
    refused("bad_amount", provider.request_unstake, market, 0)

    result = provider.request_unstake(market, 10**21)
    period = market.parameters()["unbonding_period"]
    requested_at = market.block_timestamp(result.transactions[-1].block)
    assert result.details["release_at"] == requested_at + period
    info = market.stake_of(key.address)
    assert (info.free, info.unbonding, info.release_at) == (10**21, 10**21, requested_at + period)

    error = refused("not_released", provider.withdraw, market)
    wait = info.release_at - latest_timestamp(world.w3)
    assert f"in {wait} s" in error.hint
    assert render.utc(info.release_at) in error.hint

    advance_time(world.w3, info.release_at)
    before = market.stake_token.balance_of(key.address)
    result = provider.withdraw(market)
    assert market.stake_token.balance_of(key.address) == before + 10**21
    assert result.details["amount"] == 10**21
    assert market.stake_of(key.address).unbonding == 0


def test_status_shows_stake_jobs_and_what_is_missing(world):
    key = world.new_key()
    market = world.market(key)
    fresh = provider.status(market)
    assert not fresh.record.registered and fresh.problems() == ["not registered: `gpumarket provider register`"]
    assert "registered  no" in fresh.render()

    provider.register(market, CPU_DEV, 2, PRICE, ENDPOINT)
    status = provider.status(world.market(), key.address)  # read-only market
    assert not status.verified
    assert any("not verified" in p for p in status.problems())
    assert any("below the min stake" in p for p in status.problems())

    world.verify(key, gpu_count=2)
    stake = world.min_stake + 10**21
    world.mint(key, stake=stake)
    provider.stake(market, stake, approve=True)

    # A client's directed job, accepted: its collateral is locked and the job shows as running.
    client = world.new_key()
    world.mint(client, payment=10**24)

    def accepted_job() -> int:
        created = jobs.create(
            world.market(client),
            SPEC,
            gpu_class=CPU_DEV,
            gpu_count=1,
            max_price=PRICE,
            max_duration=600,
            provider=key.address,
            approve=True,
            agent_timeouts=None,
        )
        market.accept_job(created.details["job_id"])
        return created.details["job_id"]

    job_id = accepted_job()
    parameters = market.parameters()
    collateral = job_collateral(PRICE * 1 * 600, parameters["collateral_bps"], parameters["collateral_rate"])

    status = provider.status(market, from_block=world.deployment.block)
    assert status.verified and status.problems() == []
    assert (status.stake.free, status.stake.locked) == (stake - collateral, collateral)
    assert [(j.job_id, j.state) for j in status.running_jobs] == [(job_id, JobState.RUNNING)]
    document = status.to_json()
    assert document["stake"]["locked"] == str(collateral)
    assert document["jobs"][0]["job_id"] == job_id
    assert (document["gpus_in_use"], document["claim_version"], document["recent_failures"]) == (1, 0, 0)
    text = status.render()
    assert re.search(rf"^\s*{job_id}\s+RUNNING\s+{client.address}", text, re.M)
    assert "1 of 2 (held by running jobs)" in text
    assert "can take jobs: yes" in text

    # A second job holds the other GPU: the chain refuses a third, and the count cannot drop.
    accepted_job()
    status = provider.status(market, from_block=world.deployment.block)
    assert status.problems() == ["all 2 GPU(s) it claims are held by running jobs: it takes a new job once one ends"]
    assert "can take jobs: no" in status.render()
    refused("gpus_in_use", provider.update, market, gpu_count=1)


def test_status_of_a_bad_address_is_refused(world):
    with pytest.raises(ActionError) as caught:
        provider.status(world.market(), "0x1234")
    assert caught.value.code == "bad_address"


def test_status_asks_the_agent_whether_it_can_start_a_job(world, fake_agent):
    """The chain says "can take jobs"; the agent says whether it runs and has a GPU free."""
    key = world.ready_provider(endpoint=fake_agent.url)
    market = world.market()
    fast = HttpTimeouts(1.0, 1.0)
    assert provider.status(market, key.address).agent is None  # not asked unless timeouts are given
    fake_agent.serve(key.address, gpus=1, free=1)
    status = provider.status(market, key.address, agent_timeouts=fast)
    assert status.problems() == [] and "agent up, 1 of 1 GPU(s) free" in status.render()
    assert "can take jobs: yes" in status.render() and status.to_json()["agent"]["free_gpus"] == 1

    fake_agent.serve(key.address, gpus=1, free=0)  # its only GPU held by a job
    status = provider.status(market, key.address, agent_timeouts=fast)
    assert [p for p in status.problems() if "held by running jobs" in p]
    assert "can take jobs: no" in status.render()

    down = world.ready_provider()
    status = provider.status(market, down.address, agent_timeouts=fast)
    assert any("does not answer" in p and "gpumarket provider run" in p for p in status.problems())
