"""is_verified: true while a passing hardware report covers now (verified_until >= now)."""

from __future__ import annotations

from helpers.constants import DAY


def test_unregistered_provider_is_not_verified(market, provider):
    assert market.is_verified(provider) is False


def test_registered_provider_is_not_verified_before_a_report(market, provider, register):
    register(provider)
    assert market.is_verified(provider) is False


def test_verified_through_verified_until_inclusive(market, chain, provider, register, verify):
    register(provider)
    verify(provider)
    verified_until = market.providers(provider).verified_until
    assert market.is_verified(provider) is True
    chain.mine(timestamp=verified_until)
    assert market.is_verified(provider) is True
    chain.mine(timestamp=verified_until + 1)
    assert market.is_verified(provider) is False


def test_failing_report_unverifies(market, chain, provider, register, verify):
    register(provider)
    verify(provider)
    chain.pending_timestamp += 1  # a later report: valid_until must move forward
    floor = market.class_floor(market.providers(provider).gpu_class)
    verify(provider, measured=floor - 1)
    assert market.is_verified(provider) is False


def test_only_the_reported_provider_is_verified(market, provider, provider2, register, verify):
    register(provider)
    register(provider2)
    verify(provider, valid_for=DAY)
    assert market.is_verified(provider) is True
    assert market.is_verified(provider2) is False
