"""choose: who may take a job now, and in what order, from the chain's facts."""

from __future__ import annotations

import pytest

from gpumarket.client.choose import JobRequirements, choose_provider, choose_providers, list_providers
from gpumarket.client.errors import NoProviderAvailable

from .conftest import CPU_DEV, DURATION, OTHER_CLASS, PRICE


def _names(world, offers):
    by_address = {key.address: name for name, key in world.providers.items()}
    return [by_address[offer.address] for offer in offers]


def test_list_shows_every_registered_provider_with_its_standing(world):
    market = world.deployment.market_at(world.w3)
    offers = {offer.address: offer for offer in list_providers(market, from_block=world.deployment.block)}
    assert set(offers) == {key.address for key in world.providers.values()}
    best = offers[world.providers["best"].address]
    assert (best.endpoint, best.verified, best.jailed, best.price_per_gpu_second) == (world.endpoint, True, False, PRICE)
    assert best.measured_throughput == 3 * market.class_floor(CPU_DEV)
    assert offers[world.providers["unverified"].address].verified is False
    assert offers[world.providers["unverified"].address].measured_throughput == 0
    assert offers[world.providers["jailed"].address].jailed is True


def test_only_those_that_can_accept_ranked_by_price_then_throughput(world):
    market = world.deployment.market_at(world.w3)
    requirements = JobRequirements(CPU_DEV, 1, 2 * PRICE, DURATION)
    # unverified, jailed and poor are cheaper but excluded; expensive is above the max;
    # other_class is another class. best and runner_up cost the same: throughput decides.
    assert _names(world, choose_providers(market, requirements)) == ["best", "runner_up"]
    assert choose_provider(market, requirements).address == world.providers["best"].address


def test_a_higher_price_cap_admits_the_expensive_one_last(world):
    market = world.deployment.market_at(world.w3)
    ranked = choose_providers(market, JobRequirements(CPU_DEV, 1, 100 * PRICE, DURATION))
    assert _names(world, ranked) == ["best", "runner_up", "expensive"]


def test_other_class_and_gpu_count(world):
    market = world.deployment.market_at(world.w3)
    assert _names(world, choose_providers(market, JobRequirements(OTHER_CLASS, 1, PRICE, DURATION))) == ["other_class"]
    with pytest.raises(NoProviderAvailable) as raised:
        choose_provider(market, JobRequirements(CPU_DEV, 2, 2 * PRICE, DURATION))
    assert "gpumarket client providers" in str(raised.value)


def test_stake_needed_for_collateral_excludes_the_poor_provider(world):
    """The poor provider holds exactly MIN_STAKE: any collateral would break accept_job."""
    market = world.deployment.market_at(world.w3)
    poor = world.providers["poor"].address
    assert market.stake_of(poor).free == world.min_stake
    ranked = choose_providers(market, JobRequirements(CPU_DEV, 1, PRICE, DURATION))
    assert poor not in [offer.address for offer in ranked]
