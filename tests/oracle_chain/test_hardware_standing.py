"""HardwareVerifier.due caches each provider's standing instead of reading every known provider's
record on every pass: a record is read again on an event about its provider, after
record_max_age_s, and whenever the cached standing would make a renewal due (a renewal is decided
on a fresh read only). Reads are counted on the real Market wrapper over the embedded chain."""

from __future__ import annotations

from collections import Counter

import pytest

from gpumarket.chain.connection import fund
from gpumarket.chain.events import HardwareVerified, ProviderRegistered
from gpumarket.chain.keys import test_account
from gpumarket.chain.market import BlockId, Market
from gpumarket.chain.models import ProviderRecord
from gpumarket.oracle.hardware import ANCHOR_GRANULARITY_S, HardwareConfig, HardwareVerifier
from gpumarket.testing.committee import Committee, hardware_report

from .conftest import CPU_DEV, PRICE, World

COMMITTEE = Committee.of_size(3, threshold=2)
WINDOW = ANCHOR_GRANULARITY_S  # the default renewal window


class CountingMarket(Market):
    """The market wrapper, counting the provider records it reads."""

    def __init__(self, world: World) -> None:
        super().__init__(world.w3, world.deployment.market)
        self.reads: Counter[str] = Counter()

    def providers(self, provider: str, *, block: BlockId = "latest") -> ProviderRecord:
        self.reads[provider] += 1
        return super().providers(provider, block=block)


def registered_provider(world: World, index: int) -> str:
    key = test_account(index)
    fund(world.w3, key.address, 10**19)
    market = world.market(key)
    market.stake_token.mint(key.address, 10**24)
    market.stake_token.approve(market.address)
    market.stake(10**21)
    market.register(CPU_DEV, 1, PRICE, "http://127.0.0.1:9/unused")
    return key.address


def verify_until(world: World, provider: str, valid_until: int) -> HardwareVerified:
    """Apply a passing report signed by the test committee; returns its event."""
    market = world.market(world.deployer)
    report = hardware_report(provider, CPU_DEV, 1, market.class_floor(CPU_DEV), valid_until, epoch=market.epoch())
    return market.submit_hardware_report(report, COMMITTEE.sign(market.domain, report)).event(HardwareVerified)


def verifier(world: World, market: CountingMarket, record_max_age_s: float) -> HardwareVerifier:
    oracle = world.oracles[0]
    config = HardwareConfig(record_max_age_s=record_max_age_s)
    return HardwareVerifier(oracle.store, oracle.signer, market, [], oracle.submitter, config=config)


@pytest.fixture
def market(world: World) -> CountingMarket:
    return CountingMarket(world)


def test_passes_over_an_unchanged_provider_read_its_record_once_per_max_age(world: World, market) -> None:
    provider = registered_provider(world, 15)
    now = world.market().block_timestamp()
    verify_until(world, provider, now + 2 * WINDOW)
    hv = verifier(world, market, record_max_age_s=60.0)
    for tick in range(100):  # 50 s of 0.5 s passes
        assert hv.due(now + tick / 2, known=[provider]) == []
    assert market.reads[provider] == 1
    assert hv.due(now + 60, known=[provider]) == []  # the cached standing has aged out
    assert market.reads[provider] == 2


def test_an_event_about_the_provider_has_its_record_read_again(world: World, market) -> None:
    provider = registered_provider(world, 16)
    other = registered_provider(world, 17)
    now = world.market().block_timestamp()
    verify_until(world, provider, now + 2 * WINDOW)
    hv = verifier(world, market, record_max_age_s=10**9)
    assert hv.due(now, known=[provider, other]) == []
    assert market.reads == {provider: 1, other: 1}
    # The provider is verified until later; until its event arrives, the pass reads nothing.
    renewed = verify_until(world, provider, now + 3 * WINDOW)
    assert hv.due(now + 1, known=[provider, other]) == []
    assert market.reads == {provider: 1, other: 1}
    hv.handle(renewed)
    assert hv.due(now + 2, known=[provider, other]) == []
    assert market.reads == {provider: 2, other: 1}
    # Its new verified_until is what the renewal is now found from.
    later = renewed.verified_until - WINDOW + 1
    assert hv.due(later, known=[provider]) == [
        (provider, renewed.verified_until - ANCHOR_GRANULARITY_S, renewed.verified_until + 1)
    ]


def test_a_renewal_is_decided_on_a_fresh_read(world: World, market) -> None:
    """The cached verified_until enters the renewal window: the record is read again, and the
    renewal follows the chain, not the cache (here the provider was renewed by a report whose
    event this verifier missed). Every pass within the window reads afresh."""
    provider = registered_provider(world, 18)
    now = world.market().block_timestamp()
    first = verify_until(world, provider, now + 2 * WINDOW)
    hv = verifier(world, market, record_max_age_s=10**9)
    assert hv.due(now, known=[provider]) == []
    second = verify_until(world, provider, now + 4 * WINDOW)  # its event is never handled
    assert hv.due(first.verified_until - WINDOW - 1, known=[provider]) == []
    assert market.reads[provider] == 1
    assert hv.due(first.verified_until - WINDOW + 1, known=[provider]) == []  # fresh: renewed already
    assert market.reads[provider] == 2
    in_window = second.verified_until - WINDOW + 1
    renewal = [(provider, second.verified_until - ANCHOR_GRANULARITY_S, second.verified_until + 1)]
    assert hv.due(in_window, known=[provider]) == renewal
    assert hv.due(in_window + 1, known=[provider]) == renewal
    assert market.reads[provider] == 4


def test_a_registration_event_queues_the_provider_and_drops_its_standing(world: World, market) -> None:
    """A provider unknown to the chain is cached as unregistered; its registration event both
    queues it (the event-triggered verification) and has its record read again."""
    key = test_account(19)
    hv = verifier(world, market, record_max_age_s=10**9)
    now = world.market().block_timestamp()
    assert hv.due(now, known=[key.address]) == []
    fund(world.w3, key.address, 10**19)
    event = world.market(key).register(CPU_DEV, 1, PRICE, "http://127.0.0.1:9/unused").event(ProviderRegistered)
    hv.handle(event)
    assert [due[0] for due in hv.due(now + 1, known=[key.address])] == [key.address]
    assert market.reads[key.address] == 1  # queued: no read needed to find it due
    assert hv.due(now + 2, known=[key.address]) == []
    assert market.reads[key.address] == 2
