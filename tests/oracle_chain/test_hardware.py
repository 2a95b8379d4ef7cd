"""Hardware verification end to end: three oracles challenge real provider agents over HTTP,
sign canonical reports, gather a 2-of-3 quorum and the designated one submits it on chain."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from gpumarket.chain.connection import advance_time, fund
from gpumarket.chain.events import ProviderRegistered, ProviderUpdated
from gpumarket.chain.keys import ServiceKey, test_account
from gpumarket.measure.provers.cheats import SkippingProver
from gpumarket.measure.provers.numpy_prover import NumpyProver
from gpumarket.oracle.hardware import (
    ANCHOR_GRANULARITY_S,
    Bucket,
    HardwareConfig,
    HardwareVerifier,
    UnknownClass,
    canonical_throughput,
    canonical_valid_until,
)
from gpumarket.oracle.settlement import submission_rank
from gpumarket.testing.committee import oracle_key

from .conftest import CPU_DEV, PRICE, World


def _run_committee(world: World, provider: str) -> list:
    attempts = _decide(world, provider)
    _submit(world, attempts)
    return attempts


def _decide(world: World, provider: str) -> list:
    """Every oracle challenges the provider and signs its report."""
    # Each oracle's follower hands it the ProviderRegistered event; the event's block time
    # is the shared anchor of valid_until.
    attempts = []
    for oracle in world.oracles:
        oracle.hv.handle(world.registrations[provider])
        due = oracle.hv.due(time.time())
        assert [d[0] for d in due] == [provider]
        attempts.append(oracle.hv.verify(*due[0]))
    # Identical canonical reports from every oracle.
    assert len({a.signed.digest for a in attempts}) == 1
    return attempts


def _submit(world: World, attempts: list) -> None:
    """Two passes of every oracle's step: the designated one submits, exactly once."""
    now = time.time()
    first = [oracle.hv.step(a, now=now) for oracle, a in zip(world.oracles, attempts, strict=True)]
    second = [oracle.hv.step(a, now=now) for oracle, a in zip(world.oracles, attempts, strict=True)]
    submitted = [r for r in first + second if r.submitted]
    assert len(submitted) == 1, [r.detail for r in first + second]
    assert all(r.detail == "already applied" for r in second)


def _funded_provider(world: World, index: int, prover) -> tuple[ServiceKey, str]:
    """test_account(index) (beyond the pre-funded ones) registered and staked; (key, endpoint)."""
    key = test_account(index)
    fund(world.w3, key.address, 10**20)
    world.start_provider(key, prover, stake=10**21)
    return key, world.market().providers(key.address).endpoint


def test_canonical_values() -> None:
    assert canonical_throughput(25.0, 10) == (Bucket.PASS, 10)
    assert canonical_throughput(10.0, 10) == (Bucket.PASS, 10)
    assert canonical_throughput(6.0, 10) == (Bucket.SLOW, 5)
    assert canonical_throughput(4.9, 10) == (Bucket.FAIL, 0)
    assert canonical_throughput(0.0, 10) == (Bucket.FAIL, 0)
    assert canonical_valid_until(7_200 + 59, 86_400) == 7_200 + 86_400
    # A renewal's anchor lies ANCHOR_GRANULARITY_S before verified_until: a wider window would
    # decide renewals whose valid_until the chain refuses as too far ahead.
    with pytest.raises(ValueError, match="renewal_window_s"):
        HardwareConfig(renewal_window_s=ANCHOR_GRANULARITY_S + 1)


def test_honest_provider_becomes_verified(world: World, honest_prover) -> None:
    provider = world.start_provider(test_account(1), honest_prover, stake=10**21)
    market = world.market()
    assert not market.is_verified(provider)
    attempts = _run_committee(world, provider)
    assert {a.bucket for a in attempts} == {Bucket.PASS}
    assert all(a.outcome.measured_gops >= market.class_floor(1) for a in attempts)
    assert market.is_verified(provider)
    assert attempts[0].report.claim_version == 0
    assert market.last_report_valid_until(provider, 0) == attempts[0].report.valid_until


def test_skipping_provider_ends_unverified_and_slashed(world: World) -> None:
    key = test_account(2)
    provider = world.start_provider(key, SkippingProver(0.5), stake=10**21)
    market = world.market()
    before = market.stake_of(provider).free
    attempts = _run_committee(world, provider)
    assert {a.bucket for a in attempts} == {Bucket.FAIL}
    assert all(a.outcome.verdict is not None and not a.outcome.verdict.passed for a in attempts)
    assert attempts[0].report.measured_throughput == 0
    assert not market.is_verified(provider)
    assert market.stake_of(provider).free < before


def test_a_failing_report_slashes_even_after_the_provider_changed_its_claim(world: World) -> None:
    """The committee decides that a provider's claim 0 is spoofed; before the report lands the
    provider changes its GPU count (claim 1). The report of claim 0 is still submitted, lands
    and slashes; the new claim is left to its own report."""
    key, endpoint = _funded_provider(world, 12, SkippingProver(0.5))
    market = world.market()
    attempts = _decide(world, key.address)
    assert {a.bucket for a in attempts} == {Bucket.FAIL} and attempts[0].report.claim_version == 0
    before = market.stake_of(key.address).free
    update = world.market(key).update_provider(CPU_DEV, 2, PRICE, endpoint).event(ProviderUpdated)
    assert update.claim_version == 1
    _submit(world, attempts)
    assert market.stake_of(key.address).free < before
    assert market.last_report_valid_until(key.address, 0) == attempts[0].report.valid_until
    record = market.providers(key.address)
    assert (record.claim_version, record.gpu_count, record.verified_until) == (1, 2, 0)
    assert market.last_report_valid_until(key.address, 1) == 0


def test_a_passing_report_of_an_outdated_claim_is_dropped_without_verifying_the_new_one(
    world: World, honest_prover
) -> None:
    """The committee decides that a provider's claim 0 passes; the provider then claims more
    GPUs. The contract refuses the report of the outdated claim (it would not slash): every
    oracle drops it, and the new claim stays unverified until it is measured itself."""
    key, endpoint = _funded_provider(world, 13, honest_prover)
    market = world.market()
    attempts = _decide(world, key.address)
    assert {a.bucket for a in attempts} == {Bucket.PASS}
    world.market(key).update_provider(CPU_DEV, 4, PRICE, endpoint)
    for oracle, attempt in zip(world.oracles, attempts, strict=True):  # every fallback due: each one tries
        results = oracle.hv.tick(now=attempt.decided_at + 10 * oracle.hv.config.fallback_delay_s)
        assert not any(r.submitted for r in results)
        assert oracle.hv.open_attempts == []
    assert not market.is_verified(key.address)
    assert market.providers(key.address).claim_version == 1
    assert market.last_report_valid_until(key.address, 0) == market.last_report_valid_until(key.address, 1) == 0


def test_unreachable_provider_gets_no_report_and_is_retried(world: World, honest_prover) -> None:
    """Silence says nothing about hardware (a provider registers before its agent runs): no
    report is signed; the provider is retried after no_answer_retry_s, given up on after
    no_answer_give_up_s, queued again by its next event and verified once its agent answers."""
    key = test_account(3)
    market = world.market(key)
    market.stake_token.mint(key.address, 10**24)
    market.stake_token.approve(market.address)
    market.stake(10**21)
    event = market.register(1, 1, 10**12, "http://127.0.0.1:9/nothing").event(ProviderRegistered)
    oracle = world.oracles[0]
    hv = HardwareVerifier(
        oracle.store,
        oracle.signer,
        world.market(),
        [],
        oracle.submitter,
        config=HardwareConfig(no_answer_retry_s=10.0, no_answer_give_up_s=15.0),
    )
    decisions = oracle.store.counts()
    hv.handle(event)
    now = time.time()
    assert hv.tick(now=now) == []
    assert oracle.store.counts() == decisions  # nothing decided, nothing signed
    assert hv.due(now + 5.0) == []  # waits before trying again
    assert hv.tick(now=now + 10.0) == []  # tried again: still silent
    assert hv.tick(now=now + 20.0) == []  # silent past the limit: given up
    assert hv.due(now + 1_000.0, known=[key.address]) == []
    assert oracle.store.counts() == decisions
    # The agent comes up (its endpoint updated): the event queues it again and every oracle verifies it.
    endpoint = world.start_agent(key, honest_prover)
    world.registrations[key.address] = market.update_provider(1, 1, 10**12, endpoint).event(ProviderUpdated)
    hv.handle(world.registrations[key.address])
    assert [d[0] for d in hv.due(now + 20.0)] == [key.address]
    attempts = _run_committee(world, key.address)
    assert {a.bucket for a in attempts} == {Bucket.PASS}
    assert world.market().is_verified(key.address)


def test_concurrent_challenges_all_pass_and_a_fallback_submits(world: World, honest_prover) -> None:
    """The three oracles challenge one agent at the same time (it answers one at a time: the
    others get 503 and re-issue a fresh challenge); the designated submitter is down, so the
    first fallback submits after its delay and the second then finds it applied."""
    provider = world.start_provider(test_account(10), honest_prover, stake=10**21)
    for oracle in world.oracles:
        oracle.hv.handle(world.registrations[provider])
    due = [oracle.hv.due(time.time())[0] for oracle in world.oracles]
    with ThreadPoolExecutor(max_workers=3) as pool:
        attempts = list(pool.map(lambda pair: pair[0].hv.verify(*pair[1]), zip(world.oracles, due, strict=True)))
    assert {a.bucket for a in attempts} == {Bucket.PASS}
    assert len({a.signed.digest for a in attempts}) == 1
    report = attempts[0].report
    members = world.oracles[0].store.current_committee().members
    ranks = {
        submission_rank(int(report.provider, 16) + report.valid_until, members, o.signer.address): (o, a)
        for o, a in zip(world.oracles, attempts, strict=True)
    }
    delay = world.oracles[0].hv.config.fallback_delay_s
    first_fallback, attempt1 = ranks[1]
    second_fallback, attempt2 = ranks[2]
    early = first_fallback.hv.step(attempt1, now=attempt1.decided_at + delay / 2)
    assert not early.submitted and "not due" in early.detail
    late = first_fallback.hv.step(attempt1, now=attempt1.decided_at + delay + 1)
    assert late.submitted, late.detail
    after = second_fallback.hv.step(attempt2, now=attempt2.decided_at + 3 * delay)
    assert not after.submitted and after.detail == "already applied"
    assert world.market().is_verified(provider)


def test_renewal_window_and_keys_never_logged(world: World, honest_prover, caplog) -> None:
    """A verified provider is due again only once its verified_until is within the renewal
    window; the renewal is anchored an hour before that verified_until, so it is valid no further
    ahead than the contract accepts; a whole verify-and-submit round logs no oracle key."""
    caplog.set_level(logging.DEBUG)
    provider = world.start_provider(test_account(11), honest_prover, stake=10**21)
    hv = world.oracles[0].hv
    for oracle in world.oracles:
        oracle.hv.handle(world.registrations[provider])
    attempts = [oracle.hv.verify(*oracle.hv.due(time.time())[0]) for oracle in world.oracles]
    now = time.time()
    assert sum(o.hv.step(a, now=now).submitted for o, a in zip(world.oracles, attempts, strict=True)) == 1
    verified_until = world.market().providers(provider).verified_until
    assert hv.due(now, known=[provider]) == []
    later = verified_until - hv.config.renewal_window_s + 1
    assert hv.due(later, known=[provider]) == [(provider, verified_until - ANCHOR_GRANULARITY_S, verified_until + 1)]
    # Unverified providers are not renewals: only a registration or update queues them.
    assert hv.due(later, known=[test_account(2).address]) == []
    # The renewal goes through once the chain's clock is in the window: every oracle anchors on
    # the same verified_until, and the report is not too far ahead of the chain.
    advance_time(world.w3, later - world.market().block_timestamp())
    renewals = [o.hv.verify(*o.hv.due(later, known=[provider])[0]) for o in world.oracles]
    assert len({a.signed.digest for a in renewals}) == 1
    validity = world.market().parameters()["hardware_validity"]
    assert verified_until < renewals[0].report.valid_until <= world.market().block_timestamp() + validity
    assert sum(o.hv.step(a, now=later).submitted for o, a in zip(world.oracles, renewals, strict=True)) == 1
    assert world.market().last_report_valid_until(provider, 0) == renewals[0].report.valid_until
    assert world.market().providers(provider).verified_until == renewals[0].report.valid_until
    for i in range(3):
        secret = oracle_key(i).hex()
        assert secret not in caplog.text and secret.lower() not in caplog.text.lower()


def test_a_renewal_ahead_of_the_chains_clock_waits_for_it(world: World, honest_prover, caplog) -> None:
    """The oracles' clocks run ahead of the chain's: a renewal decided in the window is refused
    as too far ahead of the chain. That is not final: the report stays open and lands on a
    later pass, once the chain's clock has caught up."""
    key, _ = _funded_provider(world, 14, honest_prover)
    _run_committee(world, key.address)
    market = world.market()
    verified_until = market.providers(key.address).verified_until
    later = verified_until - world.oracles[0].hv.config.renewal_window_s + 1
    with caplog.at_level(logging.INFO, logger="gpumarket.oracle.hardware"):
        for _ in range(2):  # decide, then every oracle tries to submit
            for oracle in world.oracles:
                assert not any(r.submitted for r in oracle.hv.tick(now=later, known=[key.address]))
    assert "verification: too far ahead" in caplog.text
    assert all(len(oracle.hv.open_attempts) == 1 for oracle in world.oracles)
    assert market.providers(key.address).verified_until == verified_until
    advance_time(world.w3, later - market.block_timestamp())
    submitted = sum(r.submitted for oracle in world.oracles for r in oracle.hv.tick(now=later, known=[key.address]))
    assert submitted == 1
    assert market.providers(key.address).verified_until > verified_until
    assert all(not oracle.hv.open_attempts for oracle in world.oracles)


def test_tick_loop_verifies_a_new_provider(world: World, honest_prover) -> None:
    """The service loop: each oracle ticks in turn until the report is applied (bounded)."""
    provider = world.start_provider(test_account(8), honest_prover, stake=10**21)
    for oracle in world.oracles:
        oracle.hv.handle(world.registrations[provider])
    submitted = 0
    for _ in range(3):
        for oracle in world.oracles:
            submitted += sum(r.submitted for r in oracle.hv.tick())
    assert submitted == 1
    assert world.market().is_verified(provider)
    assert all(not oracle.hv.open_attempts for oracle in world.oracles)


def test_unknown_class_is_refused_not_failed(world: World) -> None:
    """A class missing from this oracle's table is never reported as a failure (no slash)."""
    hv = world.oracles[0].hv
    owner = world.market(world.deployer)
    owner.set_gpu_class(999, 5)
    key = world.deployer  # the funded accounts are all taken; the owner may be a provider too
    market = world.market(key)
    event = market.register(999, 1, 10**12, "http://127.0.0.1:9/x").event(ProviderRegistered)
    hv.handle(event)
    decisions = world.oracles[0].store.counts()
    assert hv.tick() == []
    assert world.oracles[0].store.counts() == decisions  # nothing decided, nothing signed
    with pytest.raises(UnknownClass):
        hv.verify(key.address, market.block_timestamp())


def test_tick_drops_a_report_the_chain_can_no_longer_apply(world: World, honest_prover) -> None:
    """The provider changes its claim after the committee decided a passing report: the
    fallback's submission reverts (outdated claim); tick logs it and drops the attempt instead
    of raising."""
    key = test_account(3)  # registered by test_unreachable_provider_gets_no_report... when run in order
    market = world.market(key)
    endpoint = world.start_agent(key, honest_prover)
    if not market.providers(key.address).registered:
        market.stake_token.mint(key.address, 10**24)
        market.stake_token.approve(market.address)
        market.stake(10**21)
        market.register(1, 1, 10**12, endpoint)
    event = market.update_provider(1, 1, 10**12, endpoint).event(ProviderUpdated)
    validity = world.market().parameters()["hardware_validity"]
    block = event.meta.block_number
    valid_until = max(
        canonical_valid_until(world.market().block_timestamp(block), validity),
        world.market().last_report_valid_until(key.address, event.claim_version, block=block) + 1,
    )
    members = world.oracles[0].store.current_committee().members
    by_rank = sorted(
        world.oracles, key=lambda o: submission_rank(int(key.address, 16) + valid_until, members, o.signer.address)
    )
    now = time.time()
    for oracle in by_rank:  # the designated one first: it finds no quorum yet; the others are not due
        oracle.hv.handle(event)
        assert not any(r.submitted for r in oracle.hv.tick(now=now))
    assert all(len(o.hv.open_attempts) == 1 for o in by_rank)
    market.update_provider(1, 2, 10**12, endpoint)  # the claim changes
    fallback = by_rank[1]
    assert fallback.hv.tick(now=now + 10 * fallback.hv.config.fallback_delay_s) == []
    assert fallback.hv.open_attempts == []


class _SlowProver(NumpyProver):
    """Honest work padded to a fixed answer time, so the measured throughput lands between
    half the floor and the floor (cpu-dev: ~17.2 G ops per challenge, floor 10 GOPS)."""

    ANSWER_SECONDS = 2.5  # ~6.9 GOPS: SLOW

    def commit(self, challenge):
        started = time.monotonic()
        commitment = super().commit(challenge)
        time.sleep(max(0.0, self.ANSWER_SECONDS - (time.monotonic() - started)))
        return commitment


def test_slow_provider_is_unverified_without_slash(world: World) -> None:
    """Valid work below the floor but above half of it: the SLOW report unverifies, no slash."""
    key = world.deployer  # no funded account is left free; the owner may be a provider too
    market = world.market(key)
    market.stake_token.mint(key.address, 10**24)
    market.stake_token.approve(market.address)
    market.stake(10**21)
    slow = world.start_agent(key, _SlowProver())
    if market.providers(key.address).registered:
        event = market.update_provider(1, 1, 10**12, slow).event(ProviderUpdated)
    else:
        event = market.register(1, 1, 10**12, slow).event(ProviderRegistered)
    world.registrations[key.address] = event
    before = market.stake_of(key.address).free
    attempts = _run_committee(world, key.address)
    assert {a.bucket for a in attempts} == {Bucket.SLOW}, [a.outcome.measured_gops for a in attempts]
    floor = market.class_floor(1)
    assert attempts[0].report.measured_throughput == (floor + 1) // 2
    assert not market.is_verified(key.address)
    assert market.stake_of(key.address).free == before
