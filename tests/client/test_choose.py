"""choose: who may take a job now, and in what order, from the chain's facts and (probe) what
the providers' agents say at GET /health."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gpumarket.agentapi.client import PROBE_TIMEOUTS, AgentHealth
from gpumarket.chain.events import JobCreated
from gpumarket.client.choose import JobRequirements, choose_provider, choose_providers, list_providers
from gpumarket.client.errors import NoProviderAvailable
from gpumarket.signing.eip712 import Outcome

from .conftest import CPU_DEV, DURATION, OTHER_CLASS, PRICE


def _names(world, offers):
    by_address = {key.address: name for name, key in world.providers.items()}
    return [by_address[offer.address] for offer in offers]


def test_list_shows_every_registered_provider_with_its_standing(world):
    market = world.deployment.market_at(world.w3)
    offers = {offer.address: offer for offer in list_providers(market, from_block=world.deployment.block)}
    assert set(offers) == {key.address for key in world.providers.values()}
    best = offers[world.providers["best"].address]
    assert (best.endpoint, best.verified, best.jailed, best.price_per_gpu_second) == (
        world.endpoint,
        True,
        False,
        PRICE,
    )
    assert best.measured_throughput == 3 * market.class_floor(CPU_DEV)
    assert offers[world.providers["unverified"].address].verified is False
    assert offers[world.providers["unverified"].address].measured_throughput == 0
    assert offers[world.providers["jailed"].address].jailed is True


def test_only_those_that_can_accept_ranked_by_price_then_throughput(world):
    market = world.deployment.market_at(world.w3)
    requirements = JobRequirements(CPU_DEV, 1, 2 * PRICE, DURATION)
    # unverified, jailed and poor are cheaper but excluded; expensive is above the max;
    # other_class is another class. best and runner_up cost the same: throughput decides.
    assert _names(world, choose_providers(market, requirements, probe=None)) == ["best", "runner_up"]
    assert choose_provider(market, requirements, probe=None).address == world.providers["best"].address


def test_a_higher_price_cap_admits_the_expensive_one_last(world):
    market = world.deployment.market_at(world.w3)
    ranked = choose_providers(market, JobRequirements(CPU_DEV, 1, 100 * PRICE, DURATION), probe=None)
    assert _names(world, ranked) == ["best", "runner_up", "expensive"]


def test_other_class_and_gpu_count(world):
    market = world.deployment.market_at(world.w3)
    other = choose_providers(market, JobRequirements(OTHER_CLASS, 1, PRICE, DURATION), probe=None)
    assert _names(world, other) == ["other_class"]
    with pytest.raises(NoProviderAvailable) as raised:
        choose_provider(market, JobRequirements(CPU_DEV, 2, 2 * PRICE, DURATION))
    assert "gpumarket client providers" in str(raised.value)


def test_a_provider_whose_gpus_running_jobs_hold_is_no_candidate(world):
    """runner_up's only GPU runs a job: the chain would refuse its next accept, so it is left out
    before any agent is asked; once the job settles it is a candidate again."""
    market = world.deployment.market_at(world.w3)
    runner_up = world.providers["runner_up"].address
    other = world.market(world.other)
    job_id = (
        other.create_job(CPU_DEV, 1, PRICE, 60, b"\x02" * 32, market.block_timestamp() + 600, provider=runner_up)
        .event(JobCreated)
        .job_id
    )
    world.accept("runner_up", job_id)
    try:
        offer = {offer.address: offer for offer in list_providers(market)}[runner_up]
        assert (offer.gpu_count, offer.gpus_in_use, offer.free_gpus) == (1, 1, 0)
        assert offer.to_json()["gpus_in_use"] == 1
        requirements = JobRequirements(CPU_DEV, 1, 2 * PRICE, DURATION)
        assert _names(world, choose_providers(market, requirements, probe=None)) == ["best"]
    finally:
        world.settle(job_id, runner_up, Outcome.COMPLETED)
    assert _names(world, choose_providers(market, requirements, probe=None)) == ["best", "runner_up"]


def test_stake_needed_for_collateral_excludes_the_poor_provider(world):
    """The poor provider holds exactly MIN_STAKE: any collateral would break accept_job."""
    market = world.deployment.market_at(world.w3)
    poor = world.providers["poor"].address
    assert market.stake_of(poor).free == world.min_stake
    ranked = choose_providers(market, JobRequirements(CPU_DEV, 1, PRICE, DURATION), probe=None)
    assert poor not in [offer.address for offer in ranked]


def test_an_agent_that_does_not_answer_is_no_candidate(world):
    """runner_up is as good as best by the chain, but nothing listens at its endpoint."""
    market = world.deployment.market_at(world.w3)
    requirements = JobRequirements(CPU_DEV, 1, 2 * PRICE, DURATION)
    assert _names(world, choose_providers(market, requirements)) == ["best"]
    offers = {offer.address: offer for offer in list_providers(market, probe=PROBE_TIMEOUTS)}
    best, runner_up = offers[world.providers["best"].address], offers[world.providers["runner_up"].address]
    assert best.agent == AgentHealth(
        world.endpoint, answered=True, gpus=0, free_gpus=0, provider=world.providers["best"].address
    )
    assert best.agent.describe() == "agent up (CPU machine)" and best.to_json()["agent"]["answered"] is True
    assert runner_up.agent is not None and not runner_up.agent.answered and "agent down" in runner_up.agent.describe()
    assert list_providers(market)[0].agent is None  # not asked unless probe is given


def test_an_agent_whose_gpus_are_held_is_no_candidate(world):
    """What the agents said decides among the chain's candidates: too few free GPUs, no job."""
    market = world.deployment.market_at(world.w3)
    said = {
        "best": AgentHealth("http://best", answered=True, gpus=1, free_gpus=0),  # its only GPU held
        "runner_up": AgentHealth("http://runner-up", answered=True, gpus=2, free_gpus=1),
    }
    by_address = {key.address: name for name, key in world.providers.items()}
    offers = [
        replace(offer, agent=said.get(by_address[offer.address], AgentHealth("x", answered=False, error="x")))
        for offer in list_providers(market)
    ]
    requirements = JobRequirements(CPU_DEV, 1, 2 * PRICE, DURATION)
    assert _names(world, choose_providers(market, requirements, offers=offers)) == ["runner_up"]
    assert said["runner_up"].describe() == "agent up, 1 of 2 GPU(s) free"
    assert not said["runner_up"].can_run(2) and AgentHealth("cpu", answered=True).can_run(8)
    with pytest.raises(NoProviderAvailable, match="whose agent answers"):
        choose_provider(market, JobRequirements(CPU_DEV, 1, PRICE // 4, DURATION))
