"""JobWatcher on a real market (embedded chain): which jobs it takes, reverts, the store, restarts."""

from __future__ import annotations

import http.client
import logging
import time
from pathlib import Path

from gpumarket.agentapi.auth import sign_request
from gpumarket.chain.connection import advance_time
from gpumarket.chain.follower import FollowerConfig
from gpumarket.chain.market import Market, TxResult
from gpumarket.chain.models import JobState
from gpumarket.measure.provers import make_prover
from gpumarket.provider.agent import AgentConfig, ProviderAgent
from gpumarket.provider.api import ProviderServer
from gpumarket.provider.jobsource import MarketJobSource
from gpumarket.provider.runner import Runner, RunnerConfig
from gpumarket.provider.store import JobStatus, Store
from gpumarket.provider.watcher import Decision, JobWatcher, WatchPolicy
from gpumarket.signing.eip712 import Outcome
from gpumarket.testing.committee import job_report

from .conftest import OTHER_CLASS, PRICE, PROVIDER_GPUS, Chain, python_spec

CONFIG = FollowerConfig(confirmations=0, poll_interval=0.05)


def watcher_for(
    chain: Chain, tmp_path: Path, store: Store, market: Market | None = None, policy: WatchPolicy | None = None
) -> JobWatcher:
    return JobWatcher(
        market or chain.market(chain.provider),
        tmp_path / "watcher.sqlite",
        store,
        start_block=chain.w3.eth.block_number + 1,
        policy=policy,
        config=CONFIG,
    )


def test_takes_open_and_directed_jobs_of_its_class_and_ignores_the_rest(chain, tmp_path, store):
    watcher = watcher_for(chain, tmp_path, store)
    open_job = chain.create_job(b"\x01" * 32)
    directed = chain.create_job(b"\x02" * 32, provider=chain.provider.address)
    other_class = chain.create_job(gpu_class=OTHER_CLASS)
    cheap = chain.create_job(max_price=PRICE - 1)
    elsewhere = chain.create_job(provider=chain.competitor.address)
    too_big = chain.create_job(gpu_count=PROVIDER_GPUS + 1)
    assert watcher.poll_once() >= 6
    assert watcher.decisions == {
        open_job: Decision.ACCEPTED,
        directed: Decision.ACCEPTED,
        other_class: Decision.OTHER_CLASS,
        cheap: Decision.PRICE_TOO_LOW,
        elsewhere: Decision.DIRECTED_ELSEWHERE,
        too_big: Decision.TOO_MANY_GPUS,
    }
    market = chain.market()
    for job_id, spec_hash in ((open_job, b"\x01" * 32), (directed, b"\x02" * 32)):
        job = market.get_job(job_id)
        assert (job.state, job.provider, job.price_per_gpu_second) == (JobState.RUNNING, chain.provider.address, PRICE)
        record = store.get(job_id)
        assert (record.state, record.client, record.spec_hash) == (JobStatus.ACCEPTED, chain.client.address, spec_hash)
    for job_id in (other_class, cheap, elsewhere, too_big):
        assert market.get_job(job_id).state == JobState.OPEN
        assert store.get(job_id) is None
    assert watcher.held_jobs() == {open_job: 1, directed: 1}
    watcher.close()


def test_policy_limits_gpus_held_and_job_value(chain, tmp_path, store):
    watcher = watcher_for(chain, tmp_path, store, policy=WatchPolicy(max_gpus=1, min_job_value=PRICE * 600))
    small = chain.create_job(max_duration=60)
    first = chain.create_job()
    second = chain.create_job()
    watcher.poll_once()
    assert watcher.decisions == {small: Decision.TOO_SMALL, first: Decision.ACCEPTED, second: Decision.BUSY}
    watcher.close()


def test_a_provider_at_capacity_on_chain_skips_a_job_instead_of_reverting(chain, tmp_path, store, caplog):
    """The chain's gpus_in_use counts the GPUs of every running job of the provider, also those
    this watcher's database never saw (accepted by an earlier install, or by hand): a job that
    does not fit is skipped, never sent to revert; once a job ends, its GPUs take the next one."""
    market = chain.market(chain.provider)
    running = [chain.create_job(), chain.create_job()]
    for job_id in running:
        market.accept_job(job_id)  # not through this watcher
    assert market.gpus_in_use(chain.provider.address) == PROVIDER_GPUS
    watcher = watcher_for(chain, tmp_path, store)
    waiting = chain.create_job()
    with caplog.at_level(logging.WARNING, logger="gpumarket.provider.watcher"):
        watcher.poll_once()
    assert watcher.decisions == {waiting: Decision.BUSY}
    assert "reverted" not in caplog.text and market.get_job(waiting).state == JobState.OPEN
    owner = chain.market(chain.deployer)
    report = job_report(running[0], chain.provider.address, Outcome.COMPLETED, gpu_seconds=60, epoch=owner.epoch())
    owner.settle(report, chain.committee.sign(owner.domain, report))
    assert market.gpus_in_use(chain.provider.address) == PROVIDER_GPUS - 1
    two = chain.create_job(gpu_count=2)
    one = chain.create_job()
    watcher.poll_once()
    assert (watcher.decisions[two], watcher.decisions[one]) == (Decision.BUSY, Decision.ACCEPTED)
    assert market.gpus_in_use(chain.provider.address) == PROVIDER_GPUS
    watcher.close()


def test_a_past_deadline_and_a_job_taken_first_are_skipped(chain, tmp_path, store):
    watcher = watcher_for(chain, tmp_path, store)
    late = chain.create_job(accept_within=10)
    taken = chain.create_job()
    chain.market(chain.competitor).accept_job(taken)
    advance_time(chain.w3, 60)
    watcher.poll_once()
    assert watcher.decisions == {late: Decision.DEADLINE_PASSED, taken: Decision.NOT_OPEN}
    assert store.get(late) is None and store.get(taken) is None
    watcher.close()


class RacedMarket(Market):
    """A real Market whose accept is preceded by a competitor's: the race the watcher loses."""

    competitor: Market

    def accept_job(self, job_id: int) -> TxResult:
        self.competitor.accept_job(job_id)
        return super().accept_job(job_id)


def test_a_reverted_accept_is_logged_and_skipped(chain, tmp_path, store, caplog):
    raced = RacedMarket(chain.w3, chain.deployment.market, signer=chain.provider, artifacts=chain.artifacts)
    raced.competitor = chain.market(chain.competitor)
    watcher = watcher_for(chain, tmp_path, store, market=raced)
    lost = chain.create_job()
    with caplog.at_level(logging.WARNING, logger="gpumarket.provider.watcher"):
        watcher.poll_once()
    assert watcher.decisions == {lost: Decision.REVERTED}
    assert "escrow: job not open" in caplog.text
    assert chain.market().get_job(lost).provider == chain.competitor.address
    assert store.get(lost) is None and watcher.held_jobs() == {}
    # Still following: the next job is taken by a plain market on the same cursor file.
    watcher.close()
    watcher = JobWatcher(chain.market(chain.provider), tmp_path / "watcher.sqlite", store, config=CONFIG)
    later = chain.create_job()
    watcher.poll_once()
    assert watcher.decisions == {later: Decision.ACCEPTED}
    watcher.close()


def test_a_restart_resumes_from_the_cursor_without_accepting_again(chain, tmp_path, store):
    watcher = watcher_for(chain, tmp_path, store, policy=WatchPolicy(max_gpus=1))
    first = chain.create_job()
    assert watcher.poll_once() == 1  # JobCreated
    assert watcher.poll_once() == 1  # its own JobAccepted, in the block after
    assert watcher.decisions == {first: Decision.ACCEPTED}
    watcher.close()

    restarted = watcher_for(chain, tmp_path, store, policy=WatchPolicy(max_gpus=1))
    assert restarted.poll_once() == 0 and restarted.decisions == {}
    assert restarted.held_jobs() == {first: 1}
    second = chain.create_job()
    restarted.poll_once()
    assert restarted.decisions == {second: Decision.BUSY}  # the running job still counts after the restart
    restarted.close()


def test_settled_and_expired_jobs_are_released_and_marked_in_the_store(chain, tmp_path, store):
    watcher = watcher_for(chain, tmp_path, store)
    settled = chain.create_job(max_duration=60)
    expired = chain.create_job(max_duration=60)
    watcher.poll_once()
    assert watcher.held_jobs() == {settled: 1, expired: 1}
    market = chain.market(chain.deployer)
    report = job_report(settled, chain.provider.address, Outcome.FAILED, epoch=market.epoch())
    market.settle(report, chain.committee.sign(market.domain, report))
    advance_time(chain.w3, 24 * 3600)
    market.expire_job(expired)
    watcher.poll_once()
    assert watcher.held_jobs() == {}
    for job_id, word in ((settled, "failed on chain"), (expired, "expired on chain")):
        record = store.get(job_id)
        assert record.state == JobStatus.LOST and word in record.detail
    watcher.close()


def test_the_running_api_takes_the_clients_spec_once_the_watcher_accepted(chain, tmp_path, store):
    runner = Runner(RunnerConfig(root=tmp_path / "jobs", meter_interval_s=0.05, meter_gpus=False, kill_grace_s=0.5))
    provider_market = chain.market(chain.provider)
    config = AgentConfig(
        address=chain.provider.address, chain_id=chain.deployment.chain_id, market=chain.deployment.market
    )
    agent = ProviderAgent(config, store, runner, MarketJobSource(provider_market), make_prover("numpy"))
    agent.recover()
    server = ProviderServer(agent, "127.0.0.1", 0).start()
    watcher = watcher_for(chain, tmp_path, store)
    try:
        spec = python_spec("print('watched')")
        job_id = chain.create_job(spec.hash())
        watcher.poll_once()
        assert store.get(job_id).state == JobStatus.ACCEPTED
        signed = sign_request(
            chain.client,
            action="put-spec",
            chain_id=chain.deployment.chain_id,
            market=chain.deployment.market,
            job_id=job_id,
            spec_hash=spec.hash(),
        )
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request(
            "PUT",
            f"/jobs/{job_id}/spec",
            spec.canonical_bytes(),
            {"Authorization": signed.to_header(), "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        assert response.status == 202, response.read()
        connection.close()
        deadline = time.monotonic() + 15
        while store.get(job_id).state != JobStatus.FINISHED:
            assert time.monotonic() < deadline, store.get(job_id)
            time.sleep(0.05)
    finally:
        watcher.close()
        server.stop()
        agent.close(stop_jobs=True, timeout_s=10)
