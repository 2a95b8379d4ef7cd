"""The paid-time cap on a real market (embedded chain): MarketJobSource reads end_deadline
(started_at + max_duration) and the chain's time at one block, and the agent caps a job's
wall-time limit with them, or refuses a job whose paid time the chain says is up. The chain's
clock is moved forward here, so the cap can only come from the chain's time, not the wall clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gpumarket.agentapi.auth import sign_request
from gpumarket.agentapi.errors import AgentError
from gpumarket.chain.connection import advance_time
from gpumarket.measure.provers import make_prover
from gpumarket.provider.agent import AgentConfig, ProviderAgent
from gpumarket.provider.jobsource import MarketJobSource
from gpumarket.provider.runner import Runner, RunnerConfig
from gpumarket.provider.store import JobStatus, Store

from .conftest import HOUR, Chain, python_spec

SLACK_S = 5.0  # how late a loaded machine may stop a job, never early
SPEC = python_spec("import time; time.sleep(60)")


@pytest.fixture
def agent(chain: Chain, tmp_path: Path, store: Store) -> Iterator[ProviderAgent]:
    market = chain.market(chain.provider)
    config = AgentConfig(address=chain.provider.address, chain_id=market.chain_id, market=market.address, gpus=(0, 1))
    runner = Runner(RunnerConfig(root=tmp_path / "jobs", meter_interval_s=0.05, meter_gpus=False, kill_grace_s=0.5))
    agent = ProviderAgent(config, store, runner, MarketJobSource(chain.market()), make_prover("numpy"))
    agent.recover()
    yield agent
    agent.close(stop_jobs=True, timeout_s=10)


def accepted_job(chain: Chain) -> int:
    job_id = chain.create_job(SPEC.hash(), max_duration=HOUR)
    chain.market(chain.provider).accept_job(job_id)
    return job_id


def send_spec(chain: Chain, agent: ProviderAgent, job_id: int):
    signed = sign_request(
        chain.client,
        action="put-spec",
        chain_id=agent.config.chain_id,
        market=agent.config.market,
        job_id=job_id,
        spec_hash=SPEC.hash(),
    )
    return agent.submit_spec(job_id, SPEC.canonical_bytes(), signed.to_header())


def test_the_source_reads_the_deadline_and_the_chains_time(chain: Chain):
    job_id = accepted_job(chain)
    read = MarketJobSource(chain.market()).get_job(job_id)
    job = chain.market().get_job(job_id)
    assert job.started_at > 0 and read.end_deadline == job.started_at + HOUR == job.end_deadline
    assert read.chain_time == chain.now()


def test_a_job_runs_only_for_the_paid_time_the_chain_has_left(chain: Chain, agent: ProviderAgent, store: Store):
    job_id = accepted_job(chain)
    end_deadline = chain.market().get_job(job_id).end_deadline
    advance_time(chain.w3, end_deadline - chain.now() - 3)  # the chain's clock: 3 s of paid time left
    left = end_deadline - chain.now()
    assert 0 < left <= 3

    record, started = send_spec(chain, agent, job_id)
    assert started and record.state == JobStatus.RUNNING
    assert agent.wait_idle(left + 30)
    record = store.get(job_id)
    assert record.state == JobStatus.FINISHED and record.stop_reason == "timeout"
    assert left <= record.finished_at - record.started_at <= left + SLACK_S  # not the spec's 20 s


def test_a_job_past_its_deadline_on_chain_is_refused_and_recorded_lost(
    chain: Chain, agent: ProviderAgent, store: Store
):
    job_id = accepted_job(chain)
    end_deadline = chain.market().get_job(job_id).end_deadline
    advance_time(chain.w3, end_deadline - chain.now() + 1)
    assert chain.market().get_job(job_id).state.name == "RUNNING"  # nobody settled or expired it yet
    free = agent.gpus.free

    with pytest.raises(AgentError) as refused:
        send_spec(chain, agent, job_id)
    assert (refused.value.status, refused.value.code) == (409, "deadline_passed")
    record = store.get(job_id)
    assert record.state == JobStatus.LOST and str(end_deadline) in record.detail and record.started_at is None
    assert agent.gpus.free == free and not agent.runner.paths(job_id).root.exists()
    assert agent.wait_idle(0.1)  # nothing is followed: the job never started
