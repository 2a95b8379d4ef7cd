"""The oracle's job loop end to end: three OracleServices challenge real provider agents while
jobs run, decide canonically, gather a 2-of-3 quorum and settle on the embedded chain."""

from __future__ import annotations

import math
import threading
import time

import pytest
from eth_utils import keccak

from gpumarket.agentapi.client import ProviderApi
from gpumarket.agentapi.errors import ProviderRefused
from gpumarket.chain.connection import advance_time
from gpumarket.chain.events import scan_events
from gpumarket.chain.keys import test_account
from gpumarket.chain.models import JobState
from gpumarket.measure.metering import UsageRecord
from gpumarket.measure.provers.cheats import LateSkippingProver
from gpumarket.measure.provers.numpy_prover import NumpyProver
from gpumarket.oracle.settlement import submission_rank
from gpumarket.signing import eip712
from gpumarket.signing.eip712 import Outcome

from .conftest import JOB_CONFIG, Market3, busy_spec, wait_for

BPS = 10_000


def settled_event(world: Market3, job_id: int):
    events = [e for e in scan_events(world.market(), ["JobSettled"]) if e.job_id == job_id]
    assert len(events) == 1, events
    return events[0]


def decisions(world: Market3, job_id: int) -> list:
    """Each oracle's decision for the job (None if it decided nothing), after checking that every
    signature it holds for the job (its own and its peers') recovers over that one decision."""
    domain = world.market().domain
    found = []
    for oracle in world.oracles:
        decision = oracle.store.job_decision(job_id)
        if decision is not None:
            for stored in oracle.store.signatures(decision.digest):
                assert eip712.recover(domain, decision.report, stored.signature) == stored.signer
        found.append(decision)
    return found


def assert_quorum_agrees(world: Market3, job_id: int, outcome: Outcome) -> None:
    """At least the threshold of oracles decided the settled outcome (an oracle whose own
    challenges went otherwise may disagree: it just does not add to the quorum)."""
    agreeing = [d for d in decisions(world, job_id) if d is not None and d.report.outcome == outcome]
    assert len(agreeing) >= world.oracles[0].store.current_committee().threshold
    assert len({d.digest for d in agreeing}) == 1


def test_honest_job_completes_and_bills_its_metered_seconds(world: Market3) -> None:
    provider = world.start_provider(test_account(1))
    client = world.client(test_account(4))
    job_id = world.run_job(client, provider.address, busy_spec(2.5))
    job = world.wait_terminal(job_id)
    assert job.state == JobState.COMPLETED
    # gpu_seconds: the agent's metered wall time, whole seconds, times the job's gpu_count (1).
    api = ProviderApi(provider.url)
    status = api.status(job_id)
    raw = api.request("GET", f"/jobs/{job_id}/usage")
    usage = UsageRecord.from_json(raw)
    assert keccak(raw).hex() == status["evidence_hash"][2:]
    expected_seconds = usage.summary.wall_ns // 10**9
    assert expected_seconds >= 2
    event = settled_event(world, job_id)
    assert event.outcome == Outcome.COMPLETED and event.gpu_seconds == expected_seconds
    payment = job.price_per_gpu_second * expected_seconds
    fee = math.ceil(payment * world.market().parameters()["protocol_fee_bps"] / BPS)
    assert (event.provider_payment, event.protocol_fee, event.client_refund, event.slashed) == (
        payment - fee,
        fee,
        job.escrow - payment,
        0,
    )
    assert event.result_hash.hex() == status["result_hash"][2:]
    bundle = client.fetch_result(job_id)  # checked against the settled result_hash
    assert int(bundle.contents["outputs/out.txt"]) > 0
    assert_quorum_agrees(world, job_id, Outcome.COMPLETED)
    # Each oracle kept the challenges it ran, as its API serves them (the dashboard's timeline).
    for oracle in world.oracles:
        ran = oracle.store.job_challenges(job_id)
        passed = {c.kind for c in ran if c.verdict == "pass"}
        assert {"start", "end"} <= passed, ran
        assert all(c.measured_gops and c.measured_gops >= c.required_gops for c in ran if c.verdict == "pass")


def test_provider_turning_lazy_fails_its_job_and_is_slashed(world: Market3) -> None:
    # Honest for the committee's three hardware challenges, then it skips half the tiles.
    lazy = world.start_provider(test_account(2), LateSkippingProver(0.5, honest_challenges=3))
    client = world.client(test_account(4))
    locked_before = world.market().stake_of(lazy.address).locked
    job_id = world.run_job(client, lazy.address, busy_spec(2.0))
    job = world.wait_terminal(job_id)
    assert job.state == JobState.FAILED
    event = settled_event(world, job_id)
    slash_bps = world.market().parameters()["slash_bps"]
    assert event.slashed == math.ceil(job.collateral * slash_bps / BPS) > 0
    assert event.client_refund == job.escrow and event.provider_payment == 0 and event.gpu_seconds == 0
    assert world.market().stake_of(lazy.address).locked == locked_before
    assert_quorum_agrees(world, job_id, Outcome.FAILED)
    # The quorum's members kept the failed challenge behind their verdict.
    failing = [o for o in world.oracles if any(c.verdict == "fail" for c in o.store.job_challenges(job_id))]
    assert len(failing) >= world.oracles[0].store.current_committee().threshold


def test_provider_killed_mid_job_fails_after_its_silence(world: Market3) -> None:
    provider = world.start_provider(test_account(3))
    client = world.client(test_account(4))
    job_id = world.run_job(client, provider.address, busy_spec(30.0))
    # Once the oracles have seen it running, the provider's machine dies (agent and job).
    wait_for(lambda: ProviderApi(provider.url).status(job_id)["state"] == "running", 20, "job running")
    wait_for(lambda: all(job_id in o.jobs.followed for o in world.oracles), 20, "oracles following")
    provider.close(stop_jobs=True)
    job = world.wait_terminal(job_id, timeout_s=60)
    assert job.state == JobState.FAILED
    event = settled_event(world, job_id)
    assert event.client_refund == job.escrow and event.slashed > 0
    assert_quorum_agrees(world, job_id, Outcome.FAILED)


def test_oracle_restarted_between_signing_and_submitting_still_settles(world: Market3) -> None:
    """The job's designated submitter is stopped the moment its decision is signed and started
    again on the same databases: the job settles once, and no oracle ever signed a second report."""
    provider = world.providers[0]  # the honest one of the first test
    client = world.client(test_account(4))
    job_id = world.market().job_count() + 1
    members = world.oracles[0].store.current_committee().members
    designated = next(i for i, o in enumerate(world.oracles) if submission_rank(job_id, members, o.address) == 0)
    oracle = world.oracles[designated]
    assert world.run_job(client, provider.address, busy_spec(2.0)) == job_id

    def signed() -> bool:
        decision = oracle.store.job_decision(job_id)
        return decision is not None and decision.signature is not None

    wait_for(signed, 60, "the designated oracle's signed decision", interval=0.02)
    before = oracle.store.job_decision(job_id)
    oracle.close()
    restarted = world.start_oracle(designated)
    assert restarted.store.job_decision(job_id).digest == before.digest
    job = world.wait_terminal(job_id)
    assert job.state == JobState.COMPLETED
    assert settled_event(world, job_id).gpu_seconds == before.report.gpu_seconds
    # The restarted oracle still holds exactly its first decision, and nothing it signed differs.
    assert decisions(world, job_id)[designated].digest == before.digest
    assert_quorum_agrees(world, job_id, Outcome.COMPLETED)


class _HangingProver(NumpyProver):
    """Honest for its first ``honest`` challenges, then never answers one (until released):
    its agent still answers status requests, so only the missing heartbeats give it away."""

    def __init__(self, honest: int, release: threading.Event) -> None:
        super().__init__()
        self.honest = honest
        self.release = release
        self.commits = 0

    def commit(self, challenge):
        self.commits += 1
        if self.commits > self.honest:
            self.release.wait(120)
        return super().commit(challenge)


def test_provider_whose_challenges_go_silent_fails_while_its_status_answers(world: Market3) -> None:
    release = threading.Event()
    try:
        silent = world.start_provider(test_account(8), _HangingProver(honest=3, release=release))
        client = world.client(test_account(4))
        job_id = world.run_job(client, silent.address, busy_spec(30.0))
        job = world.wait_terminal(job_id, timeout_s=60)
        assert job.state == JobState.FAILED
        assert ProviderApi(silent.url).status(job_id)["state"] == "running"  # it kept answering that
        assert_quorum_agrees(world, job_id, Outcome.FAILED)
    finally:
        release.set()


def test_agent_down_across_the_jobs_end_settles_completed_from_its_real_start(world: Market3) -> None:
    """The agent stops (its job keeps running), the job ends while the agent is down, and the
    agent comes back on the same databases: the oracles find the job finished and it settles
    COMPLETED, billed for its whole metered time from its real start; nobody is slashed."""
    provider = world.start_provider(test_account(9))
    client = world.client(test_account(4))
    job_id = world.run_job(client, provider.address, busy_spec(4.0))
    wait_for(lambda: ProviderApi(provider.url).status(job_id)["state"] == "running", 60, "job running")
    wait_for(lambda: all(job_id in o.jobs.followed for o in world.oracles), 60, "oracles following")
    provider.close()  # jobs keep running
    workdir = provider.config.workdir / f"job-{job_id}"
    wait_for(lambda: (workdir / "exit_status").exists(), 60, "the job ends while its agent is down")
    restarted = type(provider)(provider.config, w3=world.w3).start()
    world.providers.append(restarted)
    job = world.wait_terminal(job_id, timeout_s=90)
    assert job.state == JobState.COMPLETED
    usage = UsageRecord.from_json(ProviderApi(restarted.url).request("GET", f"/jobs/{job_id}/usage"))
    # From its real start, not from the restart: the job ran 4 s from before its first sample
    # (however late a loaded machine took that one), and its last sample is its exit.
    assert usage.summary.wall_ns >= 4 * 10**9 - usage.samples[0].t_ns
    event = settled_event(world, job_id)
    assert event.gpu_seconds == usage.summary.wall_ns // 10**9 and event.slashed == 0
    assert_quorum_agrees(world, job_id, Outcome.COMPLETED)


def test_a_spec_sent_after_the_paid_time_is_not_the_providers_fault(world: Market3) -> None:
    """The client sends its spec only after the job's paid time ended: the agent refuses it and
    records the job lost without starting it. No oracle decides anything (the provider never
    had the job's spec while it could run), and the job ends by expiry: the client refunded in
    full, the provider's collateral unlocked, nobody slashed. (Runs last: it moves the clock.)"""
    provider = world.start_provider(test_account(10))
    client = world.client(test_account(4))
    spec = busy_spec(1.0)
    job_id = client.create_job(
        spec, gpu_class=1, gpu_count=1, max_price=10**12, max_duration=60, provider=provider.address
    )
    job = client.wait_running(job_id, timeout_s=60)
    wait_for(lambda: all(job_id in o.jobs.followed for o in world.oracles), 60, "oracles following")
    advance_time(world.w3, 200)  # past end_deadline and the oracles' overrun margin
    with pytest.raises(ProviderRefused) as refused:
        client.send_spec(job_id, spec)
    assert refused.value.code == "deadline_passed"
    status = ProviderApi(provider.url).status(job_id)
    assert status["state"] == "lost" and status["started_at"] is None

    def seen_lost(oracle) -> bool:
        followed = oracle.jobs._jobs.get(job_id)
        return followed is not None and followed.agent_state == "lost"

    wait_for(lambda: all(seen_lost(o) for o in world.oracles), 60, "every oracle polled the job lost")
    time.sleep(2 * JOB_CONFIG.poll_interval_s)  # and stepped it again after that
    assert decisions(world, job_id) == [None, None, None]
    grace = world.market().parameters()["settle_grace"]
    advance_time(world.w3, grace + 1)
    client.expire(job_id)
    expired = world.market().get_job(job_id)
    assert expired.state == JobState.EXPIRED
    assert world.market().stake_of(provider.address).locked == 0
    assert not [e for e in scan_events(world.market(), ["JobSettled"]) if e.job_id == job_id]
    assert job.escrow > 0
